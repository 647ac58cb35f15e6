/**
 * The transformer block of `deno task bench` (b8 s64 d128 h4, Adam, MSE) as a stepper for
 * in-process A/B runs (bench/ab.ts `--workload block`): compiled under given code-generator
 * settings, its state kept on the device between calls.
 */

import { type CodegenOptions, type DeviceArray, gpu, jit, readArrays, toDevice } from "../mod.ts";
import { blockInputs, blockTrainStep, destroyTree } from "./ours.ts";
import { blockCase } from "./specs.ts";

export interface BlockStepper {
  /** Distinct pipelines of the compiled step. */
  pipelines: number;
  /** Runs `n` steps back to back with one sync at the end; milliseconds per step. */
  run(n: number): Promise<number>;
  close(): void;
}

/** The block's train step under `codegen` (over the device's own settings), compiled and warm. */
export async function blockStepper(codegen: Partial<CodegenOptions>): Promise<BlockStepper> {
  const c = blockCase(8, 64, 128, 4);
  const inputs = blockInputs(c);
  const device = await gpu();
  const f = jit(blockTrainStep(c), { device, codegen });
  const program = await f.lower(inputs.state, inputs.x, inputs.labels);
  let state = await toDevice(inputs.state, device);
  const x = await toDevice(inputs.x, device), labels = await toDevice(inputs.labels, device);
  const run = async (n: number) => {
    const t0 = performance.now();
    let loss: DeviceArray | undefined;
    for (let i = 0; i < n; i++) {
      const out = await f.onDevice(state, x, labels);
      destroyTree(state);
      state = { params: out.params, m: out.m, v: out.v };
      loss?.destroy();
      loss = out.loss;
    }
    await readArrays([loss!]);
    loss!.destroy();
    return (performance.now() - t0) / n;
  };
  await run(2);
  return {
    pipelines: new Set(program.kernels.map((k) => k.wgsl)).size,
    run,
    close: () => [state, x, labels].forEach(destroyTree),
  };
}
