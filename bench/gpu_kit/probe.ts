/**
 * What the GPU machine's WebGPU offers (bench/gpu_kit/session.sh's first step): every adapter
 * Deno sees (both power preferences), its features and the limits the runtime asks for, then the
 * device our runtime opens — which of shader-f16, timestamp-query and subgroups it was granted
 * (issue 15 asks whether Deno grants subgroups on a GPU), its loop-iteration budget and the
 * adapter-derived codegen settings (`gpuCodegen`). One JSON object per line.
 */
import { Device, LIMIT_NAMES } from "../../runtime/device.ts";
import { gpuCodegen } from "../../runtime/jit.ts";

const INFO = [
  "vendor",
  "architecture",
  "device",
  "description",
  "subgroupMinSize",
  "subgroupMaxSize",
  "isFallbackAdapter",
];
type Info = Record<string, unknown>;

for (const powerPreference of ["high-performance", "low-power"] as const) {
  const adapter = await navigator.gpu.requestAdapter({ powerPreference });
  if (!adapter) {
    console.log(JSON.stringify({ powerPreference, adapter: null }));
    continue;
  }
  const limits = adapter.limits as unknown as Record<string, number>;
  console.log(JSON.stringify({
    powerPreference,
    // GPUAdapterInfo's fields are getters, which JSON.stringify skips.
    info: Object.fromEntries(INFO.map((k) => [k, (adapter.info as unknown as Info)[k]])),
    features: [...adapter.features].sort(),
    limits: Object.fromEntries(LIMIT_NAMES.map((k) => [k, limits[k]])),
  }));
}

const device = await Device.open();
console.log(JSON.stringify({
  opened: device.info.description,
  fallback: device.info.isFallbackAdapter,
  granted: device.info.features.filter((f) =>
    ["shader-f16", "timestamp-query", "subgroups"].includes(f)
  ),
  maxLoopIterations: device.info.maxLoopIterations,
  gpuCodegen: gpuCodegen(device.info.limits),
}));
device.destroy();
