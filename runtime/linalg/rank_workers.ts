/**
 * The rank report's singular values on every core: `rankByLayerType`'s measures, each matrix in a
 * worker (the longest first, each to the next idle worker), then grouped as it groups them. Where
 * workers cannot run (a bundle, a browser, no read permission on the worker's module, one core) it
 * measures in this thread; the result is the same.
 */

import type { HostArray } from "../../dsl/host_array.ts";
import {
  groupRanks,
  type LayerTypeRank,
  measureUpdate,
  rankReportNames,
  type RankReportOptions,
  updateOf,
  type UpdateRank,
  updateWork,
} from "../../dsl/linalg/rank.ts";
import { siblingWorkerModule } from "../host.ts";
import type { RankJob, RankReply } from "./rank_worker.ts";

/** Workers to start: the machine's cores, at most one per matrix (1: measure in this thread). */
function workerCount(jobs: number): number {
  const cores = (globalThis.navigator as { hardwareConcurrency?: number } | undefined)
    ?.hardwareConcurrency ?? 1;
  return Math.max(1, Math.min(cores, jobs));
}

/**
 * `rankByLayerType(before, after, names, opts)`, the matrices measured in parallel workers. An
 * error in a measure (a non-finite update) rejects with that error's message, as the serial
 * report throws it.
 */
export async function rankByLayerTypeInWorkers(
  before: Record<string, HostArray>,
  after: Record<string, HostArray>,
  names: readonly string[],
  opts: RankReportOptions = {},
): Promise<LayerTypeRank[]> {
  const picked = rankReportNames(before, names, opts.maxWork);
  const work = (n: string) => updateWork(before[n].shape);
  const order = [...picked].sort((a, b) => work(b) - work(a));
  const measured = new Map<string, UpdateRank>();
  const module = siblingWorkerModule(import.meta.url, "rank_workers.ts", "rank_worker.ts");
  const count = workerCount(order.length);
  if (!module || count < 2) {
    for (const name of order) measured.set(name, measureUpdate(before[name], after[name], opts));
    return groupRanks(names, measured);
  }
  const workers = Array.from({ length: count }, () => new Worker(module, { type: "module" }));
  try {
    let next = 0;
    await Promise.all(workers.map(async (worker) => {
      while (next < order.length) {
        const index = next++;
        const name = order[index];
        const { delta, relativeChange } = updateOf(before[name], after[name]);
        const reply = await measure(worker, {
          index,
          delta,
          threshold: opts.threshold,
          method: opts.method,
        });
        if ("error" in reply) throw new Error(reply.error);
        measured.set(name, { rank: reply.rank, entropyRank: reply.entropyRank, relativeChange });
      }
    }));
  } finally {
    for (const w of workers) w.terminate();
  }
  return groupRanks(names, measured);
}

/** Sends one job to `worker` (its ΔW transferred, not copied) and waits for the reply. */
function measure(worker: Worker, job: RankJob): Promise<RankReply> {
  return new Promise((resolve, reject) => {
    worker.onmessage = (e: MessageEvent<RankReply>) => resolve(e.data);
    worker.onerror = (e) => {
      e.preventDefault();
      reject(new Error(`rank report: a worker failed: ${e.message}`));
    };
    worker.postMessage(job, [(job.delta.data as Float32Array).buffer as ArrayBuffer]);
  });
}
