/** The runtime: WebGPU devices, device arrays, the executor and `jit`. */
export { Device, type DeviceInfo, type DeviceOptions, gpu } from "./device.ts";
export { DeviceArray, isDeviceArray, readArrays } from "./device_array.ts";
export { Executable } from "./executor.ts";
export { jit, type JitOptions, type Jitted, toDevice, toHost } from "./jit.ts";
