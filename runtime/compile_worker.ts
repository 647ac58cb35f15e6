/**
 * The worker of `startCompileWorker` (compile_ahead.ts): opens a device like the caller's, compiles
 * the variants it is sent (Mesa's shader cache keeps the machine code for the caller) and replies
 * with how many it compiled: 0 when it could not open such a device, or was given another adapter
 * (whose cache the caller would not read).
 */

import { type CompileRequest, compileVariants } from "./compile_ahead.ts";
import { adapterDescription } from "./device.ts";

const scope = self as unknown as Worker;

scope.onmessage = async (e: MessageEvent<CompileRequest>) => {
  let compiled = 0;
  try {
    const { variants, features, limits, powerPreference, description } = e.data;
    const adapter = await navigator.gpu.requestAdapter({ powerPreference });
    if (adapter && adapterDescription(adapter.info) === description) {
      const gpu = await adapter.requestDevice({
        requiredFeatures: features as GPUFeatureName[],
        requiredLimits: limits,
      });
      compiled = await compileVariants(gpu, variants);
      gpu.destroy();
    }
  } catch {
    compiled = 0; // the caller's first dispatches compile these kernels instead
  }
  scope.postMessage({ compiled });
};
