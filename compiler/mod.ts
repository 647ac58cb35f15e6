/** The compiler: IR passes (and, with the WebGPU issue, fusion, memory planning and WGSL). */

export * from "./passes/mod.ts";
