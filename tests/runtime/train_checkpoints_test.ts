/** Checkpoint pruning keeps this run's newest three and never deletes a later run's files. */

import assert from "node:assert/strict";
import { join } from "node:path";
import { saveCheckpoint } from "../../runtime/train/checkpoints.ts";

const snapshot = (step: number) => ({
  step,
  tensors: { w: { shape: [2], dtype: "f32" as const, data: Float32Array.of(step, -step) } },
});
const files = async (dir: string) =>
  (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();

Deno.test("checkpoints: the newest three of this run are kept; higher steps of another run stay", async () => {
  const dir = await Deno.makeTempDir();
  // Another run (other settings) left checkpoints at steps 100, 150, 200 in the same folder.
  for (const s of [100, 150, 200]) {
    await saveCheckpoint(dir, { snapshot: snapshot(s), dataPosition: s, configHash: "other" });
  }
  for (const s of [2, 4, 6, 8]) {
    await saveCheckpoint(dir, { snapshot: snapshot(s), dataPosition: s, configHash: "mine" });
  }
  assert.deepEqual(await files(dir), [
    "step-00000004.safetensors",
    "step-00000006.safetensors",
    "step-00000008.safetensors",
    "step-00000100.safetensors",
    "step-00000150.safetensors",
    "step-00000200.safetensors",
  ]);
  await Deno.remove(join(dir), { recursive: true });
});
