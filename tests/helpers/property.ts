/**
 * fast-check settings shared by every property test: a fixed seed on CI (override with FC_SEED,
 * scale the run count with FC_RUNS) and the seed printed when a property fails.
 */

import fc from "fast-check";

export { fc };

function envNumber(name: string): number | undefined {
  try {
    const v = Deno.env.get(name);
    return v === undefined ? undefined : Number(v);
  } catch {
    return undefined; // no --allow-env: use the defaults
  }
}

export const DEFAULT_SEED = 20261125;
export const SEED = envNumber("FC_SEED") ?? DEFAULT_SEED;
const RUN_SCALE = envNumber("FC_RUNS") ?? 1;

/** Asserts a property with the suite's seed; a failure message starts with the seed to replay. */
export function checkProperty<T>(
  property: fc.IProperty<T>,
  opts: { numRuns?: number } = {},
): void {
  const numRuns = Math.max(1, Math.round((opts.numRuns ?? 50) * RUN_SCALE));
  try {
    fc.assert(property, { seed: SEED, numRuns });
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    // fast-check keeps the failing assertion's own message in `cause`.
    const cause = e instanceof Error && e.cause instanceof Error ? `\n${e.cause.message}` : "";
    throw new Error(`property failed (replay with FC_SEED=${SEED})\n${msg}${cause}`);
  }
}
