/**
 * The host process seen from code that also runs in a browser: Deno's namespace read through
 * globalThis (the browser build has none, and must not name it), and permissions asked without
 * prompting.
 */

/** Deno's namespace, or undefined outside Deno. */
export const denoNamespace = (): typeof Deno | undefined =>
  (globalThis as { Deno?: typeof Deno }).Deno;

/**
 * Whether a permission is granted already. Queried, never requested: an ungranted permission
 * would otherwise prompt on a terminal. False outside Deno.
 */
export function permissionGranted(desc: Deno.PermissionDescriptor): boolean {
  try {
    return denoNamespace()?.permissions.querySync(desc).state === "granted";
  } catch {
    return false;
  }
}

/**
 * The URL of the worker module `file` beside the module at `self` (an `import.meta.url` ending in
 * `/${selfFile}`), when workers can load it: a file of the source tree that may be read. Undefined
 * in a bundle (the module was renamed) or a browser.
 */
export function siblingWorkerModule(
  self: string,
  selfFile: string,
  file: string,
): string | undefined {
  try {
    if (typeof Worker === "undefined" || !self.endsWith(`/${selfFile}`)) return undefined;
    const url = new URL(`./${file}`, self);
    if (url.protocol !== "file:") return undefined;
    return permissionGranted({ name: "read", path: decodeURIComponent(url.pathname) })
      ? url.href
      : undefined;
  } catch {
    return undefined;
  }
}

/** The variable Mesa's CPU drivers (llvmpipe, lavapipe) read their thread count from. */
const MESA_THREADS_VARIABLE = "LP_NUM_THREADS";

/** Variables in which MPI launchers (OpenMPI, MPICH's Hydra, PMIx) give the ranks on this node. */
const LOCAL_RANKS_VARIABLES = ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "PMIX_LOCAL_SIZE"];

/** Ranks of an MPI job on this node, as its launcher says (1 outside one, or unreadable). */
function localRanks(deno: typeof Deno): number {
  for (const variable of LOCAL_RANKS_VARIABLES) {
    if (!permissionGranted({ name: "env", variable })) continue;
    const n = Number(deno.env.get(variable));
    if (Number.isInteger(n) && n > 0) return n;
  }
  return 1;
}

/**
 * Runs `open` (requesting an adapter and a device) with Mesa's CPU drivers given twice as many
 * threads as cores, where the user has not chosen a number, this process has the machine to itself
 * (not one of several MPI ranks on this node) and the environment may be written (never prompted
 * for). Mesa splits each dispatch among these threads and reads the number while the adapter and
 * device are made; the variable is removed again afterwards, so that processes this one starts
 * (MPI ranks among them) choose for themselves.
 *
 * Measured on this project's 2-core machines: with the default (one thread per core) the default
 * HD-PiSSA step used one core's worth of time (process CPU time = wall time, 0.47 s a step), with
 * twice the cores both (0.25 s, the same CPU time; 3 threads 0.32 s, 6 or 8 0.26 s, 16 0.30 s).
 * Four MPI ranks on the same 2 cores ran 1.8× slower with 4 threads each than with Mesa's 2 (and
 * about as fast with 1), hence the exception. Mesa caps the number itself.
 */
export async function withMesaThreads<T>(open: () => Promise<T>): Promise<T> {
  const deno = denoNamespace();
  if (!deno) return await open();
  // Opens already in flight with the value this module set share it; the last one removes it.
  if (mesaThreadOpens === 0) {
    const mayChoose = permissionGranted({ name: "env", variable: MESA_THREADS_VARIABLE }) &&
      deno.env.get(MESA_THREADS_VARIABLE) === undefined && localRanks(deno) === 1;
    if (!mayChoose) return await open();
    const cores = Math.max(1, globalThis.navigator?.hardwareConcurrency ?? 1);
    deno.env.set(MESA_THREADS_VARIABLE, String(2 * cores));
  }
  mesaThreadOpens++;
  try {
    return await open();
  } finally {
    if (--mesaThreadOpens === 0) deno.env.delete(MESA_THREADS_VARIABLE);
  }
}

/** Device opens in flight while `withMesaThreads`' value is set. */
let mesaThreadOpens = 0;
