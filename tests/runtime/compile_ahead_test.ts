/**
 * Compiling new pipelines ahead on two threads (runtime/compile_ahead.ts): the cost split is a
 * balanced partition, the placeholder bindings read off a kernel's WGSL are the ones it binds, and
 * a program whose pipelines a worker compiled ahead computes what the same program compiled at
 * its first dispatch does, bit for bit (the same kernels; only where Mesa compiled them differs).
 */

import {
  add,
  crossEntropy,
  gelu,
  gpu,
  type HostArray,
  jit,
  layerNorm,
  matmul,
  type Tensor,
  valueAndGrad,
} from "../../mod.ts";
import {
  bindingsOf,
  type CompileRequest,
  compileVariants,
  splitByCost,
  startCompileWorker,
  type Variant,
  variantsOf,
  WORKER_HANDICAP_CHARS,
  WORKER_MIN_CHARS,
} from "../../runtime/compile_ahead.ts";
import assert from "node:assert/strict";
import { lastLineOf, MOD_URL } from "../helpers/fresh_process.ts";
import { checkProperty, fc } from "../helpers/property.ts";
import { assertTreeMatches, seeded } from "./jit_helpers.ts";

const chars = (texts: readonly string[]) => texts.reduce((n, t) => n + t.length, 0);

Deno.test("splitByCost partitions the texts, its sides within one text of even", () => {
  checkProperty(
    fc.property(
      fc.array(fc.string({ maxLength: 60 }), { maxLength: 30 }),
      fc.nat({ max: 100 }),
      (texts, handicap) => {
        const [mine, theirs] = splitByCost(texts, handicap);
        assert.deepEqual([...mine, ...theirs].sort(), [...texts].sort());
        // Longest first to the lighter side: the sides end at most one text apart.
        const longest = Math.max(0, ...texts.map((t) => t.length));
        const gap = Math.abs(chars(mine) - (chars(theirs) + handicap));
        assert.ok(gap <= Math.max(longest, handicap), `gap ${gap}, longest ${longest}`);
      },
    ),
  );
});

// A loss whose gradient program has enough WGSL to be compiled ahead: three layers of different
// widths, so its products and row kernels do not share texts.
type Params = Record<"w1" | "b1" | "w2" | "b2" | "w3" | "b3", Tensor>;
function mlpLoss(p: Params, x: Tensor, y: Tensor): Tensor {
  const h1 = gelu(add(matmul(x, p.w1), p.b1));
  const h2 = gelu(add(matmul(layerNorm(h1), p.w2), p.b2));
  const logits = add(matmul(layerNorm(h2), p.w3), p.b3);
  return crossEntropy(logits, y);
}

const params = {
  w1: seeded([24, 64], 41, -0.5, 0.5),
  b1: seeded([64], 42, -0.1, 0.1),
  w2: seeded([64, 48], 43, -0.5, 0.5),
  b2: seeded([48], 44, -0.1, 0.1),
  w3: seeded([48, 40], 46, -0.5, 0.5),
  b3: seeded([40], 47, -0.1, 0.1),
};
const x = seeded([32, 24], 45, -2, 2);
const y: HostArray = {
  shape: [32],
  dtype: "i32",
  data: Int32Array.from({ length: 32 }, (_, i) => (i * 7) % 40),
};

Deno.test("bindingsOf reads each kernel's storage bindings and its shape uniform", async () => {
  const device = await gpu({ compileAhead: false });
  try {
    const program = await jit(valueAndGrad(mlpLoss), { device }).program(params, x, y);
    for (const k of program.kernels) {
      const expected = k.slots.map((_, binding) => ({ binding, uniform: false, bytes: 0 }));
      // The shape uniform: the kernel's sizes, a whole number of vec4s.
      if (k.params) {
        expected.push({ binding: k.slots.length, uniform: true, bytes: k.params.byteLength });
      }
      assert.deepEqual(bindingsOf(k.wgsl), expected, k.name);
    }
  } finally {
    device.destroy();
  }
});

Deno.test("a program compiled ahead by a worker computes what one compiled at first dispatch does", async () => {
  const ahead = await gpu({ compileAhead: true });
  const atDispatch = await gpu({ compileAhead: false });
  try {
    const step = valueAndGrad(mlpLoss);
    // Sizes as uniforms (a GPU's choice), which Mesa compiles a variant of the text per contents.
    const codegen = { shapeBuffer: "uniform" as const };
    const program = await jit(step, { device: ahead, codegen }).program(params, x, y);
    const texts = [...new Set(program.kernels.map((k) => k.wgsl))];
    const variants = variantsOf(program.kernels).size;
    assert.ok(variants > texts.length, "kernels that share a text with other sizes");
    const share = chars(splitByCost(texts, WORKER_HANDICAP_CHARS)[1]);
    assert.ok(share >= WORKER_MIN_CHARS, `the worker's share is only ${share} characters`);
    const got = await jit(step, { device: ahead, codegen })(params, x, y);
    const want = await jit(step, { device: atDispatch, codegen })(params, x, y);
    assertTreeMatches(got, want, "exact", "compiled ahead vs at first dispatch");
    // Both threads compiled a share; each variant (a text with its sizes) once.
    const { here, worker } = ahead.compiledAhead;
    assert.ok(here > 0 && worker > 0, `here ${here}, worker ${worker}`);
    assert.equal(here + worker, variants);
    assert.deepEqual(atDispatch.compiledAhead, { here: 0, worker: 0 });
    // A second program of the same variants compiles nothing again.
    await jit(step, { device: ahead, codegen })(params, x, y);
    assert.equal(ahead.compiledAhead.here + ahead.compiledAhead.worker, variants);
    // With sizes in storage (a CPU adapter's setting), a variant per text.
    const inStorage = { shapeBuffer: "storage" as const, groupKernels: false };
    const stored = await jit(step, { device: ahead, codegen: inStorage }).program(params, x, y);
    assert.equal(
      variantsOf(stored.kernels).size,
      new Set(stored.kernels.map((k) => k.wgsl)).size,
    );
  } finally {
    ahead.destroy();
    atDispatch.destroy();
  }
});

Deno.test("variantsOf: one per distinct text and uniform contents (sizes in storage: one per text)", () => {
  // Texts that declare a uniform are compiled per contents; sizes in a storage buffer are data.
  const uniform = (wgsl: string) => wgsl.includes("var<uniform>");
  checkProperty(
    fc.property(
      fc.array(
        fc.record({
          wgsl: fc.constantFrom("a var<uniform>", "b var<uniform>", "c var<storage, read>"),
          params: fc.option(
            fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 4, maxLength: 4 }),
            {
              nil: undefined,
            },
          ),
        }),
        { maxLength: 20 },
      ),
      (ks) => {
        const kernels = ks.map((k) => ({
          wgsl: k.wgsl,
          params: k.params && Int32Array.from(k.params),
        }));
        const variants = [...variantsOf(kernels).values()];
        const same = (a: Variant, b: Variant) =>
          a.wgsl === b.wgsl &&
          (!uniform(a.wgsl) || `${a.params ?? "-"}` === `${b.params ?? "-"}`);
        for (const k of kernels) assert.equal(variants.filter((v) => same(v, k)).length, 1);
        assert.ok(variants.every((v) => kernels.some((k) => same(v, k))));
      },
    ),
  );
});

Deno.test("compileVariants (what the worker runs): a pipeline per text, each variant dispatched with its own uniform contents", async () => {
  const dev = await gpu({ compileAhead: false });
  const g = dev.gpu;
  const written = new Map<GPUBuffer, number[]>();
  const bound: GPUBuffer[][] = [];
  const writeBuffer = g.queue.writeBuffer.bind(g.queue),
    createBindGroup = g.createBindGroup.bind(g),
    createComputePipeline = g.createComputePipeline.bind(g);
  let pipelines = 0;
  try {
    g.createComputePipeline = (d: GPUComputePipelineDescriptor) => {
      pipelines++;
      return createComputePipeline(d);
    };
    g.queue.writeBuffer = ((buffer: GPUBuffer, offset: number, data: Int32Array<ArrayBuffer>) => {
      written.set(buffer, [...data]);
      return writeBuffer(buffer, offset, data);
    }) as typeof g.queue.writeBuffer;
    g.createBindGroup = (d: GPUBindGroupDescriptor) => {
      bound.push([...d.entries].map((e) => (e.resource as GPUBufferBinding).buffer));
      return createBindGroup(d);
    };
    const wgsl = `@group(0) @binding(0) var<storage, read_write> out0: array<f32>;
@group(0) @binding(1) var<uniform> shape_: array<vec4<i32>, 1>;
@compute @workgroup_size(8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  for (var i = 0i; i < shape_[0].x; i++) { out0[i] = f32(gid.x); }
}`;
    const variants = [Int32Array.of(3, 0, 0, 0), Int32Array.of(5, 1, 0, 0)].map((params) => ({
      wgsl,
      params,
    }));
    assert.equal(await compileVariants(g, variants), 2);
    assert.equal(pipelines, 1);
    assert.deepEqual(bound.map((buffers) => written.get(buffers[1])), [[3, 0, 0, 0], [5, 1, 0, 0]]);
  } finally {
    g.queue.writeBuffer = writeBuffer;
    g.createBindGroup = createBindGroup;
    g.createComputePipeline = createComputePipeline;
    dev.destroy();
  }
});

const device = (texts: string[], features: string[] = []): CompileRequest => ({
  variants: texts.map((wgsl) => ({ wgsl })),
  features,
  limits: {},
  powerPreference: "high-performance",
  description: "",
});

/** What a worker for `request` reports within 60 s (its adapter's description filled in). */
async function compiledBy(request: CompileRequest): Promise<number> {
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  const description = request.description === "" ? adapter!.info.description : request.description;
  const worker = startCompileWorker({ ...request, description });
  assert.ok(worker, "the worker starts from the source tree");
  return await worker.result(60_000);
}

Deno.test("a worker that cannot compile reports 0, and one that can reports what it compiled", async () => {
  const empty = "@compute @workgroup_size(1) fn main() {}";
  assert.equal(await compiledBy(device(["not wgsl"])), 0);
  assert.equal(await compiledBy(device([empty], ["no-such-feature"])), 0);
  assert.equal(await compiledBy({ ...device([empty]), description: "another adapter" }), 0);
  assert.equal(await compiledBy(device([empty, "not wgsl", empty + " "])), 2);
  // Two variants of one text (its uniform's contents differ): both compiled.
  const loop = `@group(0) @binding(0) var<storage, read_write> out0: array<f32>;
@group(0) @binding(1) var<uniform> shape_: array<vec4<i32>, 1>;
@compute @workgroup_size(8)
fn main() { for (var i = 0i; i < shape_[0].x; i++) { out0[i] = 1.0; } }`;
  const variants = [Int32Array.of(3, 0, 0, 0), Int32Array.of(5, 0, 0, 0)].map((params) => ({
    wgsl: loop,
    params,
  }));
  assert.equal(await compiledBy({ ...device([]), variants }), 2);
});

Deno.test("a worker past its time reports 0 and is stopped", async () => {
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  const worker = startCompileWorker({
    ...device(["@compute @workgroup_size(1) fn main() {}"]),
    description: adapter!.info.description,
  })!;
  assert.equal(await worker.result(0), 0);
  worker.stop(); // idempotent
});

Deno.test("kernels compiled together: a bad one's error names it, and the good ones stay cached", async () => {
  const dev = await gpu({ compileAhead: false });
  try {
    const good = (n: number) => `@compute @workgroup_size(${n}) fn main() {}`;
    const kernels = [
      { wgsl: good(1), name: "good_a" },
      { wgsl: good(2), name: "good_b" },
      { wgsl: "fn main( {", name: "bad_c" },
    ];
    await assert.rejects(
      () => dev.pipelinesFor(kernels),
      (e: Error) => /^WGSL kernel bad_c failed to compile/.test(e.message),
    );
    assert.equal(dev.pipelineCount, 2);
    assert.equal((await dev.pipelinesFor(kernels.slice(0, 2))).length, 2);
  } finally {
    dev.destroy();
  }
});

/**
 * `device.compileAheadEnabled` of the default device in a fresh `deno run` with `env` added and
 * the permissions in `flags` ("not mesa" on another adapter).
 */
function enabledWith(env: Record<string, string>, flags = ["-A"]): Promise<string> {
  const source = `import { gpu } from ${JSON.stringify(MOD_URL)};
const d = await gpu();
const mesa = d.info.isFallbackAdapter && /llvmpipe|lavapipe/i.test(d.info.description);
console.log(mesa ? d.compileAheadEnabled : "not mesa");\n`;
  return lastLineOf(source, env, flags);
}

Deno.test("compiling ahead is on by default only where it can help: lavapipe with Mesa's cache on", async () => {
  const usual = await enabledWith({});
  if (usual === "not mesa") return; // another adapter: nothing to compile ahead
  // Each decides on its own; the Vulkan default is on unless the user's environment turned it off.
  const backend = Deno.env.get("DENO_WEBGPU_BACKEND") ?? "";
  const cacheOff = /^(1|t|true|y|yes)$/i.test(Deno.env.get("MESA_SHADER_CACHE_DISABLE") ?? "");
  if (!cacheOff && !/\bgl\b/.test(backend)) assert.equal(usual, "true");
  assert.equal(await enabledWith({ MESA_SHADER_CACHE_DISABLE: "true" }), "false");
  assert.equal(
    await enabledWith({ MESA_SHADER_CACHE_DISABLE: "true", DENO_WEBGPU_BACKEND: "vulkan" }),
    "false",
  );
  assert.equal(
    await enabledWith({ DENO_WEBGPU_BACKEND: "gl", MESA_SHADER_CACHE_DISABLE: "" }),
    "false",
  );
  // Without --allow-env the variables cannot be read (nor prompted for): Mesa's default holds.
  const noEnv = await enabledWith({ MESA_SHADER_CACHE_DISABLE: "true" }, ["--allow-read"]);
  assert.equal(noEnv, "true");
});
