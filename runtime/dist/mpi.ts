/**
 * A Deno FFI binding to MPI (OpenMPI by default, MPICH supported). Only what the collectives need:
 * init/finalize, rank/size, all-gather(v), reduce-scatter, broadcast, barrier, abort. Every
 * collective runs as a non-blocking FFI call (a worker thread; MPI_THREAD_MULTIPLE) so Deno's event
 * loop — WebGPU callbacks, timers, the hang watchdog — keeps running while it is in flight.
 *
 * The two libraries differ in their handles (OpenMPI: addresses of predefined globals; MPICH: int
 * constants) and in MPI_IN_PLACE; `detectFlavor` picks by the library that opened.
 */

export type MpiFlavor = "openmpi" | "mpich";
export type MpiDatatype = "byte" | "f32" | "i32" | "f64";

const OPENMPI_LIBS = ["libmpi.so.40", "libmpi.so"];
const MPICH_LIBS = ["libmpich.so.12", "libmpi.so.12", "libmpich.so"];

const MPI_THREAD_MULTIPLE = { openmpi: 3, mpich: 3 } as const;

/** MPICH's handles (mpi.h of MPICH 3/4). */
const MPICH_HANDLES = {
  comm_world: 0x44000000,
  byte: 0x4c00010d,
  i32: 0x4c000405,
  f32: 0x4c00040a,
  f64: 0x4c00080b,
  sum: 0x58000003,
  max: 0x58000001,
};

const OMPI_STATICS = {
  ompi_mpi_comm_world: { type: "pointer" },
  ompi_mpi_byte: { type: "pointer" },
  ompi_mpi_int: { type: "pointer" },
  ompi_mpi_float: { type: "pointer" },
  ompi_mpi_double: { type: "pointer" },
  ompi_mpi_op_sum: { type: "pointer" },
  ompi_mpi_op_max: { type: "pointer" },
} as const;

/**
 * The collectives' signatures, blocking (the calling thread waits in MPI) or non-blocking (a
 * worker thread waits; the call returns a Promise), named with `suffix`.
 */
function collectives<H extends "pointer" | "i32", S extends string>(
  h: H,
  nonblocking: boolean,
  suffix: S,
) {
  const name = <N extends string>(n: N) => `${n}${suffix}` as `${N}${S}`;
  return {
    [name("MPI_Barrier")]: { name: "MPI_Barrier", parameters: [h], result: "i32", nonblocking },
    // (sendbuf, sendcount, sendtype, recvbuf, recvcounts[], displs[], recvtype, comm)
    [name("MPI_Allgatherv")]: {
      name: "MPI_Allgatherv",
      parameters: ["pointer", "i32", h, "pointer", "buffer", "buffer", h, h],
      result: "i32",
      nonblocking,
    },
    // (sendbuf, sendcount, sendtype, recvbuf, recvcount, recvtype, comm)
    [name("MPI_Allgather")]: {
      name: "MPI_Allgather",
      parameters: ["pointer", "i32", h, "pointer", "i32", h, h],
      result: "i32",
      nonblocking,
    },
    // (sendbuf, recvbuf, recvcounts[], datatype, op, comm)
    [name("MPI_Reduce_scatter")]: {
      name: "MPI_Reduce_scatter",
      parameters: ["pointer", "pointer", "buffer", h, h, h],
      result: "i32",
      nonblocking,
    },
    // (sendbuf, recvbuf, count, datatype, op, comm)
    [name("MPI_Allreduce")]: {
      name: "MPI_Allreduce",
      parameters: ["pointer", "pointer", "i32", h, h, h],
      result: "i32",
      nonblocking,
    },
    // (buf, count, datatype, root, comm)
    [name("MPI_Bcast")]: {
      name: "MPI_Bcast",
      parameters: ["pointer", "i32", h, "i32", h],
      result: "i32",
      nonblocking,
    },
  } as unknown as Record<string, Deno.ForeignFunction>;
}

/** FFI signatures with `H` as the handle type ("pointer" for OpenMPI, "i32" for MPICH). */
function symbols<H extends "pointer" | "i32">(h: H) {
  return {
    MPI_Initialized: { parameters: ["buffer"], result: "i32" },
    MPI_Finalized: { parameters: ["buffer"], result: "i32" },
    MPI_Init_thread: { parameters: ["pointer", "pointer", "i32", "buffer"], result: "i32" },
    MPI_Finalize: { parameters: [], result: "i32" },
    MPI_Get_library_version: { parameters: ["buffer", "buffer"], result: "i32" },
    MPI_Comm_rank: { parameters: [h, "buffer"], result: "i32" },
    MPI_Comm_size: { parameters: [h, "buffer"], result: "i32" },
    MPI_Abort: { parameters: [h, "i32"], result: "i32" },
    MPI_Wtime: { parameters: [], result: "f64" },
    ...collectives(h, false, ""),
    ...collectives(h, true, "_nb"),
  } as const;
}

type OmpiLib = Deno.DynamicLibrary<ReturnType<typeof symbols<"pointer">> & typeof OMPI_STATICS>;
type MpichLib = Deno.DynamicLibrary<ReturnType<typeof symbols<"i32">>>;
// deno-lint-ignore no-explicit-any
type Handle = any;
interface Handles {
  comm: Handle;
  types: Record<MpiDatatype, Handle>;
  sum: Handle;
  max: Handle;
}

export class MpiError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MpiError";
  }
}

function openFirst<S extends Deno.ForeignLibraryInterface>(
  names: string[],
  syms: S,
): { lib: Deno.DynamicLibrary<S>; path: string } | undefined {
  for (const path of names) {
    try {
      return { lib: Deno.dlopen(path, syms), path };
    } catch (e) {
      if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
        throw new MpiError(
          `loading ${path} needs FFI permission: run with --allow-ffi (deno task train has it)`,
        );
      }
      /* not installed under this name: try the next */
    }
  }
  return undefined;
}

/** The world size the launcher announced in the environment, if any. */
export function launcherSize(): number | undefined {
  // World sizes only (MPI_LOCALNRANKS counts one node's ranks, not the job's).
  for (const v of ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"]) {
    const s = Deno.env.get(v);
    if (s !== undefined && /^\d+$/.test(s)) return Number(s);
  }
  return undefined;
}

/** MPI_COMM_WORLD through FFI. One per process (`Mpi.world()`). */
export class Mpi {
  private static instance: Promise<Mpi> | undefined;
  private finalized = false;
  /** Collectives are issued one at a time, in program order (the same on every rank). */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly flavor: MpiFlavor,
    readonly libraryPath: string,
    readonly version: string,
    readonly rank: number,
    readonly size: number,
    private readonly fns: Handle,
    private readonly handles: Handles,
  ) {}

  /**
   * Initialises MPI once per process (MPI_THREAD_MULTIPLE). `library` overrides the search (an
   * absolute path or soname; also the HDPISSA_MPI_LIBRARY variable). Fails if the library cannot
   * be loaded, or if a launcher announced N ranks and MPI reports a different size (a launcher of
   * another MPI library makes every rank a singleton).
   */
  static world(opts: { library?: string } = {}): Promise<Mpi> {
    Mpi.instance ??= Mpi.open(opts.library ?? Deno.env.get("HDPISSA_MPI_LIBRARY"));
    return Mpi.instance;
  }

  private static open(library?: string): Promise<Mpi> {
    const ompi = openFirst(library ? [library] : OPENMPI_LIBS, {
      ...symbols("pointer"),
      ...OMPI_STATICS,
    });
    // A library that has OpenMPI's globals is OpenMPI; otherwise try it (or MPICH's names) as MPICH.
    let flavor: MpiFlavor;
    let fns: Handle;
    let path: string;
    let handles: Handles;
    if (ompi) {
      const s = (ompi.lib as OmpiLib).symbols;
      flavor = "openmpi", fns = s, path = ompi.path;
      handles = {
        comm: s.ompi_mpi_comm_world,
        types: {
          byte: s.ompi_mpi_byte,
          f32: s.ompi_mpi_float,
          i32: s.ompi_mpi_int,
          f64: s.ompi_mpi_double,
        },
        sum: s.ompi_mpi_op_sum,
        max: s.ompi_mpi_op_max,
      };
    } else {
      const mpich = openFirst(library ? [library] : MPICH_LIBS, symbols("i32"));
      if (!mpich) {
        throw new MpiError(
          `cannot load an MPI library (tried ${
            library ?? [...OPENMPI_LIBS, ...MPICH_LIBS].join(", ")
          }); ` +
            "install OpenMPI (apt-get install openmpi-bin libopenmpi-dev) or set HDPISSA_MPI_LIBRARY",
        );
      }
      flavor = "mpich", fns = (mpich.lib as MpichLib).symbols, path = mpich.path;
      const h = MPICH_HANDLES;
      handles = {
        comm: h.comm_world,
        types: { byte: h.byte, f32: h.f32, i32: h.i32, f64: h.f64 },
        sum: h.sum,
        max: h.max,
      };
    }
    const flag = new Int32Array(1);
    check(fns.MPI_Initialized(flag), "MPI_Initialized");
    if (!flag[0]) {
      const provided = new Int32Array(1);
      check(
        fns.MPI_Init_thread(null, null, MPI_THREAD_MULTIPLE[flavor], provided),
        "MPI_Init_thread",
      );
      if (provided[0] < MPI_THREAD_MULTIPLE[flavor]) {
        throw new MpiError(
          `MPI_Init_thread: ${path} provides thread level ${
            provided[0]
          }, not MPI_THREAD_MULTIPLE; ` +
            "collectives run on two threads (the caller and the hang watchdog, or the non-blocking calls)",
        );
      }
    }
    const out = new Int32Array(1);
    check(fns.MPI_Comm_rank(handles.comm, out), "MPI_Comm_rank");
    const rank = out[0];
    check(fns.MPI_Comm_size(handles.comm, out), "MPI_Comm_size");
    const size = out[0];
    // MPI_MAX_LIBRARY_VERSION_STRING: 256 in OpenMPI, 8192 in MPICH.
    const text = new Uint8Array(16384), len = new Int32Array(1);
    fns.MPI_Get_library_version(text, len);
    const version = new TextDecoder().decode(text.subarray(0, len[0])).split(/[\n\0,]/)[0].trim();
    const announced = launcherSize();
    if (announced !== undefined && announced !== size) {
      throw new MpiError(
        `the launcher started ${announced} ranks but ${path} (${flavor}) reports a world of ${size}: ` +
          `the launcher belongs to another MPI library. Use ${
            flavor === "openmpi" ? "OpenMPI's mpirun" : "mpirun.mpich"
          } or set HDPISSA_MPI_LIBRARY to the library of your mpirun`,
      );
    }
    const mpi = new Mpi(flavor, path, version, rank, size, fns, handles);
    // A script that never calls close() must still finalize, or mpirun reports an abnormal end.
    globalThis.addEventListener("unload", () => mpi.finalizeAtExit());
    return Promise.resolve(mpi);
  }

  private get inPlace(): Deno.PointerValue {
    return Deno.UnsafePointer.create(this.flavor === "openmpi" ? 1n : 0xffffffffffffffffn);
  }

  /**
   * Non-blocking calls (a worker thread waits in MPI; Deno's event loop runs on) cost ≈5 ms each
   * on a busy 2-core machine against ≈0.2 ms blocking, so blocking is the default; a blocking call
   * is guarded by `watch` (a watchdog on another thread) instead of a timer.
   */
  nonblocking = false;
  /**
   * Called before a blocking collective (with the call's own time limit, if it has one); the
   * returned function after it.
   */
  watch: (name: string, timeoutMs?: number) => () => void = () => () => {};

  /** Runs the collective `fn` after every collective issued before it (program order). */
  private serial(fn: string, ...args: unknown[]): Promise<void> {
    return this.serialWithin(undefined, fn, ...args);
  }

  /** `serial` with a time limit for this call (undefined: the watchdog's default). */
  private serialWithin(timeoutMs: number | undefined, fn: string, ...args: unknown[]) {
    if (this.finalized) return Promise.reject(new MpiError(`${fn}: MPI is finalized`));
    const call = async () => {
      if (this.nonblocking) return await this.fns[`${fn}_nb`](...args) as number;
      const done = this.watch(fn, timeoutMs);
      try {
        return this.fns[fn](...args) as number;
      } finally {
        done();
      }
    };
    const next = this.queue.then(call).then((rc) => check(rc, fn));
    this.queue = next.catch(() => {});
    return next;
  }

  /**
   * Every rank contributes `send` (its own length); returns all contributions concatenated in rank
   * order. `counts[i]` is rank i's element count.
   */
  allGatherV(
    send: ArrayBufferView | null,
    recv: ArrayBufferView,
    counts: number[],
    type: MpiDatatype,
  ) {
    // `send` null: this rank's block is already in place in `recv` (MPI_IN_PLACE).
    if (counts.every((c) => c === counts[0])) {
      // Equal blocks: the plain collective, whose algorithms OpenMPI tunes more than the v-form's.
      const t = this.handles.types[type];
      return this.serial(
        "MPI_Allgather",
        send ? ptr(send) : this.inPlace,
        counts[0],
        t,
        ptr(recv),
        counts[0],
        t,
        this.handles.comm,
      );
    }
    const displs = new Int32Array(counts.length);
    for (let i = 1; i < counts.length; i++) displs[i] = displs[i - 1] + counts[i - 1];
    return this.serial(
      "MPI_Allgatherv",
      send ? ptr(send) : this.inPlace,
      counts[this.rank],
      this.handles.types[type],
      ptr(recv),
      Int32Array.from(counts),
      displs,
      this.handles.types[type],
      this.handles.comm,
    );
  }

  /** Sums `send` over ranks and leaves block `rank` (of `counts[rank]` elements) in `recv`. */
  reduceScatter(
    send: ArrayBufferView,
    recv: ArrayBufferView,
    counts: number[],
    type: "f32" | "i32" | "f64",
  ) {
    // The v-form even for equal blocks: OpenMPI's MPI_Reduce_scatter_block measured 2–4× slower.
    return this.serial(
      "MPI_Reduce_scatter",
      ptr(send),
      ptr(recv),
      Int32Array.from(counts),
      this.handles.types[type],
      this.handles.sum,
      this.handles.comm,
    );
  }

  /** In-place all-reduce (sum or max) of `buf`. */
  allReduce(buf: ArrayBufferView, count: number, type: "f32" | "i32" | "f64", op: "sum" | "max") {
    return this.serial(
      "MPI_Allreduce",
      this.inPlace,
      ptr(buf),
      count,
      this.handles.types[type],
      this.handles[op],
      this.handles.comm,
    );
  }

  broadcast(buf: ArrayBufferView, count: number, type: MpiDatatype, root: number) {
    return this.serial(
      "MPI_Bcast",
      ptr(buf),
      count,
      this.handles.types[type],
      root,
      this.handles.comm,
    );
  }

  /** `timeoutMs` overrides the watchdog's limit for this call (Infinity: none). */
  barrier(timeoutMs?: number) {
    return this.serialWithin(timeoutMs, "MPI_Barrier", this.handles.comm);
  }

  wtime(): number {
    return this.fns.MPI_Wtime();
  }

  /** Ends every rank of the job (the launcher kills the rest) with `code`. */
  abort(code: number): never {
    this.fns.MPI_Abort(this.handles.comm, code);
    Deno.exit(code);
  }

  /**
   * MPI_Finalize at process exit (the `unload` event), when `finalize` was never called. The
   * event loop has drained by then, so no collective is in flight. Not on a failing exit
   * (`Deno.exit(code ≠ 0)`): the peers may never reach MPI_Finalize, and the launcher must see
   * the failure.
   */
  private finalizeAtExit(): void {
    if (this.finalized || Deno.exitCode !== 0) return;
    this.finalized = true;
    const flag = new Int32Array(1);
    this.fns.MPI_Finalized(flag);
    if (!flag[0]) this.fns.MPI_Finalize();
  }

  /** MPI_Finalize once all collectives have finished (idempotent). */
  async finalize(): Promise<void> {
    if (this.finalized) return;
    await this.queue;
    this.finalized = true;
    const flag = new Int32Array(1);
    this.fns.MPI_Finalized(flag);
    if (!flag[0]) check(this.fns.MPI_Finalize(), "MPI_Finalize");
  }
}

function ptr(view: ArrayBufferView): Deno.PointerValue {
  if (view.byteLength === 0) return null;
  return Deno.UnsafePointer.of(view as unknown as BufferSource);
}

function check(rc: number, name: string): void {
  if (rc !== 0) throw new MpiError(`${name} failed with MPI error code ${rc}`);
}
