/**
 * Run checkpoints: the trainer snapshot plus the data position, one safetensors file per saved
 * step (written atomically, SHA-256 in the metadata). Loading walks back from the newest file and
 * skips any that fail validation, with a warning — a crash mid-write or a corrupted disk block
 * costs at most the steps since the previous checkpoint.
 */

import { join } from "node:path";
import type { TrainerSnapshot } from "../trainer.ts";
import { readSafetensorsFile, writeSafetensors } from "../io/safetensors.ts";

export interface Checkpoint {
  snapshot: TrainerSnapshot;
  /** Samples consumed from the data stream (the sampler's position). */
  dataPosition: number;
  /** Hash of the settings a resumed run must share (method, data, sizes, seed, …). */
  configHash: string;
}

const NAME = /^step-(\d{8})\.safetensors$/;
const fileFor = (dir: string, step: number) =>
  join(dir, `step-${String(step).padStart(8, "0")}.safetensors`);

export async function saveCheckpoint(dir: string, ckpt: Checkpoint, keep = 3): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const path = fileFor(dir, ckpt.snapshot.step);
  await writeSafetensors(path, ckpt.snapshot.tensors, {
    step: String(ckpt.snapshot.step),
    data_position: String(ckpt.dataPosition),
    config_hash: ckpt.configHash,
  });
  // Prune only checkpoints older than this one: higher steps in the folder belong to another run
  // (other settings) and are not this run's to delete.
  const steps = (await listSteps(dir)).filter((s) => s <= ckpt.snapshot.step).sort((a, b) => b - a);
  for (const old of steps.slice(keep)) await Deno.remove(fileFor(dir, old)).catch(() => {});
  return path;
}

async function listSteps(dir: string): Promise<number[]> {
  const steps: number[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      const m = e.isFile ? NAME.exec(e.name) : null;
      if (m) steps.push(Number(m[1]));
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return steps;
}

/** The newest checkpoint that validates (checksum, fields, matching config), or undefined. */
export async function loadLatestCheckpoint(
  dir: string,
  configHash: string,
  warn: (message: string) => void,
): Promise<Checkpoint | undefined> {
  for (const step of (await listSteps(dir)).sort((a, b) => b - a)) {
    const path = fileFor(dir, step);
    try {
      const file = await readSafetensorsFile(path);
      const meta = file.metadata;
      if (meta.config_hash !== configHash) {
        throw new Error(
          `it was written by a run with other settings (config hash ${meta.config_hash})`,
        );
      }
      return {
        snapshot: { step: Number(meta.step), tensors: file.tensors },
        dataPosition: Number(meta.data_position),
        configHash,
      };
    } catch (e) {
      warn(`warning: skipping checkpoint ${path}: ${(e as Error).message}`);
    }
  }
  return undefined;
}
