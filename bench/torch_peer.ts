/**
 * The PyTorch column of `deno task bench` (on the CPU, or on the GPU: bench/torch.ts): the same workloads from the same initial
 * values (written as raw files for bench/torch_micro.py), timed by the same protocol in one
 * Python process after the WebGPU libraries have run.
 */

import type { HostArray } from "../web.ts";
import { ADAM, BLOCK_KEYS, type BlockCase, MLP_KEYS, type MlpCase } from "./specs.ts";
import { ensureTorch, PYTHON } from "./torch.ts";
import type { MeasureOptions } from "./util.ts";

/** One PyTorch result line. */
export interface TorchResult {
  kind: "info" | "matmul" | "ew" | "mlp" | "block";
  id?: string;
  n?: number;
  ms?: number;
  iters?: number;
  first_ms?: number;
  loss1?: number;
  version?: string;
  threads?: number;
  /** Where it ran: "cpu", "cuda (<GPU name>)". */
  device?: string;
}

/** Collects the workloads as bench/main.ts runs them, then runs PyTorch on all of them. */
export class TorchPeer {
  private readonly dir = Deno.makeTempDirSync({ prefix: "bench-torch-" });
  private readonly spec = {
    matmul: [] as number[],
    ew: 0,
    mlp: [] as Record<string, unknown>[],
    block: [] as Record<string, unknown>[],
  };
  /** Outputs PyTorch writes, read back to compare with ours. */
  readonly outputs = new Map<string, string>();

  private write(name: string, data: Float32Array | Int32Array): void {
    Deno.writeFileSync(
      `${this.dir}/${name}`,
      new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    );
  }

  matmul(n: number, a: Float32Array, b: Float32Array): void {
    this.write(`mm${n}_a.f32`, a);
    this.write(`mm${n}_b.f32`, b);
    this.spec.matmul.push(n);
  }

  elementwise(a: Float32Array, b: Float32Array, c: Float32Array): void {
    [a, b, c].forEach((x, i) => this.write(`ew_${"abc"[i]}.f32`, x));
    this.spec.ew = a.length;
  }

  mlp(c: MlpCase): string {
    const id = `mlp${c.batch}x${c.hidden}`;
    for (const k of MLP_KEYS) this.write(`${id}_${k}.f32`, c.params[k].data);
    this.write(`${id}_x.f32`, c.x.data);
    this.write(`${id}_labels.i32`, c.labels);
    const shapes = Object.fromEntries(MLP_KEYS.map((k) => [k, c.params[k].shape]));
    this.spec.mlp.push({ id, batch: c.batch, inputs: c.inputs, shapes });
    return id;
  }

  block(c: BlockCase): string {
    const id = `block${c.batch}x${c.seq}`;
    for (const k of BLOCK_KEYS) this.write(`${id}_${k}.f32`, c.params[k].data);
    this.write(`${id}_x.f32`, c.x.data);
    this.write(`${id}_target.f32`, c.target.data);
    const shapes = Object.fromEntries(BLOCK_KEYS.map((k) => [k, c.params[k].shape]));
    this.spec.block.push({
      id,
      batch: c.batch,
      seq: c.seq,
      width: c.width,
      heads: c.heads,
      shapes,
    });
    return id;
  }

  /** The array PyTorch computed for `name` (matmul `mm{n}_c`, elementwise `ew_out`), if any. */
  output(name: string): HostArray["data"] | undefined {
    try {
      const bytes = Deno.readFileSync(`${this.dir}/${name}.f32`);
      return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    } catch {
      return undefined;
    }
  }

  /** Runs every collected workload in PyTorch: the result lines, or why there are none. */
  async run(measure: MeasureOptions): Promise<TorchResult[] | string> {
    try {
      await ensureTorch();
      const child = new Deno.Command(PYTHON, {
        args: [new URL("./torch_micro.py", import.meta.url).pathname],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const writer = child.stdin.getWriter();
      const settings = { ...this.spec, dir: this.dir, ...measure, adam: ADAM };
      await writer.write(new TextEncoder().encode(JSON.stringify(settings)));
      await writer.close();
      const out = await child.output();
      if (!out.success) {
        const err = new TextDecoder().decode(out.stderr).trim().split("\n").at(-1);
        return `failed: ${err}`;
      }
      return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as TorchResult);
    } catch (e) {
      return `failed: ${(e instanceof Error ? e.message : String(e)).split("\n")[0]}`;
    }
  }

  /** Removes the workload files. */
  dispose(): void {
    Deno.removeSync(this.dir, { recursive: true });
  }
}
