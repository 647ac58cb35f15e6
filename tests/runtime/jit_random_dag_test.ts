/**
 * Differential testing of the compiler on random programs: values and gradients from `jit` (fused
 * and with `fuse: false`) against `interpret`, and the fused results against the unfused ones.
 *
 * Two generators:
 * 1. `arbExpr` / `buildExpr` (tests/helpers/random_program.ts): expression trees over two
 *    f32[3,4] inputs, with repeated subexpressions, reductions broadcast back, gram matmuls and
 *    slice/concat views.
 * 2. `arbDag` (below): straight-line programs over 2–3 inputs of random shapes, where each
 *    instruction reads any earlier value (so intermediates get several consumers), with
 *    broadcasting binary ops, reductions over random axes with keepDims, matmuls of compatible
 *    shapes (batched, 1-D, or against a constant), views (transpose, reshape, slice, concat, pad,
 *    broadcast, expandDims), gathers and selects, and several outputs in a pytree.
 *
 * Tolerances: `DAG` is rtol 1e-4 and atol 1e-4 relative to the output's largest magnitude (long
 * chains of transcendentals, sums and cancellations); fused vs unfused must agree to a few ULPs
 * (`FUSED`): both run the same WGSL arithmetic in the same order, but a driver may contract a
 * multiply and an add into an fma inside a fused kernel.
 */

import * as dsl from "../../mod.ts";
import {
  type CodegenOptions,
  gpu,
  grad,
  type HostArray,
  interpret,
  jit,
  type JitOptions,
  type Kernel,
  type Program,
  type Tensor,
} from "../../mod.ts";
import { arbExpr, buildExpr, type Expr, PROGRAM_SHAPE } from "../helpers/random_program.ts";
import { arbShape } from "../helpers/arrays.ts";
import { storageBindings } from "../../compiler/codegen/shape_params.ts";
import {
  arbF32,
  assertTreeMatches,
  checkAsyncProperty,
  fc,
  leaves,
  seeded,
  type Tol,
} from "./jit_helpers.ts";

const DAG: Tol = { rtol: 1e-4, atol: 1e-4, scaled: true };
const FUSED: Tol = { rtol: 1e-5, atol: 1e-6, scaled: true };

// deno-lint-ignore no-explicit-any
type Fn = (...args: any[]) => unknown;

/**
 * Runs `f` fused and unfused on the device and with the reference: both device results must match
 * the reference, and each other.
 */
export async function checkProgram(
  f: Fn,
  args: unknown[],
  label: string,
  describe: () => string,
  opts: JitOptions = {},
  between: Tol = FUSED,
  reference: Tol = DAG,
) {
  const expected = interpret(f, ...args);
  const fused = await jit(f, opts)(...args);
  const unfused = await jit(f, { ...opts, fuse: false })(...args);
  try {
    assertTreeMatches(unfused, expected, reference, `${label} (fuse: false) vs interpret`);
    assertTreeMatches(fused, expected, reference, `${label} (fused) vs interpret`);
    assertTreeMatches(fused, unfused, between, `${label} fused vs unfused`);
  } catch (e) {
    const program = await jit(f, opts).lower(...args);
    throw new Error(`${(e as Error).message}\nprogram: ${describe()}\n${String(program)}`);
  }
}

/** Σ sum(out · W) over every f32 output leaf, W fixed per leaf. */
export function lossOf(f: (...ts: Tensor[]) => unknown): (...ts: Tensor[]) => Tensor {
  return (...ts: Tensor[]) => {
    const outs = dsl.flattenTree(f(...ts), (x): x is Tensor => x instanceof dsl.Tensor)[0];
    return outs.map((o, i) => dsl.sum(dsl.mul(o, seeded(o.shape, 100 + i, -1, 1))))
      .reduce((a, b) => dsl.add(a, b));
  };
}

// ---------------------------------------------------------------------------------------------
// Generator 1: arbExpr

Deno.test("jit random expression programs (arbExpr): values, gradients, fused = unfused", async () => {
  await checkAsyncProperty(
    fc.asyncProperty(
      arbExpr,
      arbF32(PROGRAM_SHAPE),
      arbF32(PROGRAM_SHAPE),
      async (expr: Expr, x: HostArray, y: HostArray) => {
        const f = (a: Tensor, b: Tensor) => buildExpr(expr, a, b);
        const describe = () => JSON.stringify(expr);
        await checkProgram(f, [x, y], "expr", describe);
        const g = grad(lossOf(f), { argnums: [0, 1] });
        await checkProgram(g, [x, y], "grad of expr", describe);
      },
    ),
    { numRuns: 16 },
  );
});

// ---------------------------------------------------------------------------------------------
// Generator 2: random DAGs with several outputs

type Instr =
  | { k: "unary"; op: number; a: number }
  | { k: "binary"; op: number; a: number; b: number }
  | { k: "reduce"; op: number; a: number; axes: number; keepDims: boolean }
  | { k: "matmul"; a: number; b: number }
  | { k: "view"; op: number; a: number; b: number; p: number[] }
  | { k: "select"; a: number; b: number }
  | { k: "take"; a: number; p: number[] }
  | { k: "row"; op: number; a: number };

export interface Dag {
  inputs: number[][];
  instrs: Instr[];
  outputs: number[];
  /**
   * Inputs with an axis past 65,535: matmuls multiply by a constant (no huge products), and a
   * take reads 65,536 or more indices (so its gradient is a large scatter-add).
   */
  large?: boolean;
}

const nat = fc.nat(1000);
const params = fc.array(fc.nat(1000), { minLength: 4, maxLength: 4 });

const arbInstr: fc.Arbitrary<Instr> = fc.oneof(
  fc.record({ k: fc.constant("unary" as const), op: nat, a: nat }),
  fc.record({ k: fc.constant("binary" as const), op: nat, a: nat, b: nat }),
  fc.record({
    k: fc.constant("reduce" as const),
    op: nat,
    a: nat,
    axes: nat,
    keepDims: fc.boolean(),
  }),
  fc.record({ k: fc.constant("matmul" as const), a: nat, b: nat }),
  fc.record({ k: fc.constant("view" as const), op: nat, a: nat, b: nat, p: params }),
  fc.record({ k: fc.constant("select" as const), a: nat, b: nat }),
  fc.record({ k: fc.constant("take" as const), a: nat, p: params }),
);

const arbDag: fc.Arbitrary<Dag> = fc.record({
  inputs: fc.array(arbShape({ minRank: 1, maxRank: 3, maxDim: 4 }), {
    minLength: 2,
    maxLength: 3,
  }),
  instrs: fc.array(arbInstr, { minLength: 3, maxLength: 10 }),
  outputs: fc.array(nat, { minLength: 1, maxLength: 3 }),
});

/** DAGs mostly of products and binary ops: products joined by an elementwise op are common. */
const productDags: fc.Arbitrary<Dag> = fc.record({
  inputs: fc.array(arbShape({ minRank: 2, maxRank: 3, minDim: 2, maxDim: 4 }), {
    minLength: 2,
    maxLength: 3,
  }),
  instrs: fc.array(
    fc.oneof(
      { arbitrary: fc.record({ k: fc.constant("matmul" as const), a: nat, b: nat }), weight: 3 },
      {
        arbitrary: fc.record({ k: fc.constant("binary" as const), op: nat, a: nat, b: nat }),
        weight: 3,
      },
      { arbitrary: arbInstr, weight: 2 },
    ),
    { minLength: 4, maxLength: 10 },
  ),
  outputs: fc.array(nat, { minLength: 1, maxLength: 3 }),
});

/**
 * Product DAGs ending in two products of one value joined by an elementwise op (a gate times an
 * up projection): the form a co-product kernel computes, whatever the instructions before drew.
 */
const joinedProductDags: fc.Arbitrary<Dag> = productDags.chain((dag) =>
  fc.tuple(nat, nat, nat).map(([b1, b2, op]) => ({
    ...dag,
    instrs: [
      ...dag.instrs,
      { k: "matmul" as const, a: 0, b: b1 },
      // a: 1 is the value the first product read; then the two products.
      { k: "matmul" as const, a: 1, b: b2 },
      { k: "binary" as const, op, a: 0, b: 1 },
    ],
  }))
);

/**
 * The same as arbDag, then a short elementwise chain over a stored array (an input, or the DAG's
 * last value) read by a reduction and by a product: two kernels that each read the chain, where
 * rule 2's exception recomputes it (random DAGs alone rarely read a chain from two anchors).
 */
const sharedChainDags: fc.Arbitrary<Dag> = arbDag.chain((dag) =>
  fc.record({ ops: fc.array(nat, { minLength: 1, maxLength: 3 }), from: nat, reduce: nat })
    .map(({ ops, from, reduce }) => {
      const last = dag.inputs.length + dag.instrs.length - 1;
      // pick(i) reads pool[len − 1 − i]: `last` is input 0, 0 the DAG's last value.
      const chain: Instr[] = ops.map((op, i) => ({
        k: "unary",
        op,
        a: i > 0 ? 0 : from % 2 ? 0 : last,
      }));
      return {
        ...dag,
        instrs: [
          ...dag.instrs,
          ...chain,
          { k: "reduce", op: reduce, a: 0, axes: reduce, keepDims: reduce % 2 === 0 },
          { k: "matmul", a: 1, b: reduce },
        ],
      };
    })
);

/**
 * The same as arbDag, then two reductions of one value over the same axes, the second of the value
 * combined with the first broadcast back (x − lse against weights), the two joined at the output
 * index, and the first read again by a later kernel over the value's shape, so it is stored (as a
 * log-sum-exp read by a loss and by its gradient): the form rule 11 computes in one kernel, which
 * random DAGs rarely draw.
 */
const siblingReductionDags: fc.Arbitrary<Dag> = arbDag.chain((dag) =>
  fc.tuple(nat, nat, nat, nat, nat, nat).map(([first, second, axes, op, join, again]) => ({
    ...dag,
    instrs: [
      ...dag.instrs,
      { k: "reduce" as const, op: first, a: 0, axes, keepDims: true },
      { k: "binary" as const, op, a: 1, b: 0 },
      // The same sign of axes as the first (op & 8), so both reduce the same axes.
      { k: "reduce" as const, op: (second & ~8) | (first & 8), a: 0, axes, keepDims: true },
      { k: "binary" as const, op: join, a: 0, b: 2 },
      // The value and the first reduction (4 and 3 back), combined: the program's last value.
      { k: "binary" as const, op: again, a: 4, b: 3 },
    ],
    outputs: [...dag.outputs, 1],
  }))
);

/**
 * The same, with row-wise composites (softmax, norms) over products among the instructions, and
 * at the end one over a product that nothing else reads (the form rule 10 computes inline).
 */
const rowProductDags: fc.Arbitrary<Dag> = productDags.chain((dag) =>
  fc.tuple(
    fc.array(fc.record({ k: fc.constant("row" as const), op: nat, a: nat }), {
      minLength: 1,
      maxLength: 3,
    }),
    nat,
    nat,
  ).map(([rows, b, op]) => ({
    ...dag,
    instrs: [
      ...dag.instrs.flatMap((ins, i) => (i < rows.length ? [ins, rows[i]] : [ins])),
      { k: "matmul" as const, a: 0, b },
      { k: "row" as const, op, a: 0 },
    ],
  }))
);

const UNARY: ((x: Tensor) => Tensor)[] = [
  dsl.tanh,
  dsl.neg,
  dsl.abs,
  dsl.sigmoid,
  (x) => dsl.exp(dsl.tanh(x)),
  dsl.sin,
  dsl.relu,
  (x) => dsl.gelu(x),
  (x) => dsl.square(dsl.tanh(x)),
  (x) => dsl.sqrt(dsl.add(dsl.abs(x), 0.5)),
  (x) => dsl.log(dsl.add(dsl.square(x), 1)),
];

const BINARY: ((a: Tensor, b: Tensor) => Tensor)[] = [
  dsl.add,
  dsl.sub,
  (a, b) => dsl.mul(dsl.tanh(a), b),
  dsl.maximum,
  dsl.minimum,
  (a, b) => dsl.div(a, dsl.add(dsl.abs(b), 1)),
];

const REDUCE = ["sum", "mean", "max", "min", "logsumexp"] as const;

/** Row-wise composites over the last axis (the product-heavy DAGs' `row` instruction). */
const ROW: ((x: Tensor) => Tensor)[] = [
  (x) => dsl.softmax(x),
  (x) => dsl.logSoftmax(x),
  (x) => dsl.rmsNorm(x),
  (x) => dsl.layerNorm(x),
];

function broadcastable(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 1; i <= Math.min(a.length, b.length); i++) {
    const [x, y] = [a[a.length - i], b[b.length - i]];
    if (x !== y && x !== 1 && y !== 1) return false;
  }
  return true;
}

/** The traced program of a DAG: a pytree { first, rest } of f32 outputs. */
export function buildDag(dag: Dag, ...xs: Tensor[]): { first: Tensor; rest: Tensor[] } {
  const pool: Tensor[] = [...xs];
  const pick = (i: number) => pool[pool.length - 1 - (i % pool.length)]; // recent values favoured
  for (const ins of dag.instrs) pool.push(step(ins, pool, pick, dag.large ?? false));
  const outs = dag.outputs.map(pick);
  return { first: pool[pool.length - 1], rest: outs };
}

function step(ins: Instr, pool: Tensor[], pick: (i: number) => Tensor, large: boolean): Tensor {
  const a = pick(ins.a);
  switch (ins.k) {
    case "unary":
      return UNARY[ins.op % UNARY.length](a);
    case "row":
      return a.ndim === 0 ? dsl.tanh(a) : ROW[ins.op % ROW.length](a);
    case "binary": {
      const b = pick(ins.b);
      const bb = broadcastable(a.shape, b.shape) ? b : dsl.mean(b); // scalar broadcasts anywhere
      return BINARY[ins.op % BINARY.length](a, bb);
    }
    case "select": {
      const b = pick(ins.b);
      const bb = broadcastable(a.shape, b.shape) ? b : dsl.max(b);
      return dsl.where(dsl.less(a, bb), dsl.mul(a, 2), bb);
    }
    case "reduce": {
      const axes = a.shape.flatMap((
        _,
        i,
      ) => ((ins.axes >> i) & 1 ? [i - (ins.op & 8 ? a.ndim : 0)] : []));
      return dsl[REDUCE[ins.op % REDUCE.length]](a, axes, { keepDims: ins.keepDims });
    }
    case "matmul": {
      if (a.ndim === 0) return dsl.mul(a, 3);
      const k = a.shape[a.ndim - 1];
      // A pool value whose contraction axis fits (batch dims broadcast), else a constant.
      const b = pool.find((t, i) =>
        !large && i >= ins.b % pool.length && t.ndim >= 1 &&
        t.shape[t.ndim === 1 ? 0 : t.ndim - 2] === k &&
        broadcastable(a.shape.slice(0, -2), t.shape.slice(0, -2))
      ) ?? seeded([k, 1 + (ins.b % 4)], ins.b);
      return dsl.mul(dsl.matmul(a, b), 1 / k);
    }
    case "take": {
      if (a.ndim === 0) return dsl.neg(a);
      const others = (ax: number) => a.size / Math.max(1, a.shape[ax]);
      // Large programs take 65,536+ indices along an axis whose complement is small (the result
      // stays of the input's order of size), preferring the largest axis.
      const largest = a.shape.indexOf(Math.max(...a.shape));
      const axis = large && others(largest) <= 8 ? largest : ins.p[0] % a.ndim;
      const d = a.shape[axis];
      const idx = large && others(axis) <= 8
        ? Array.from(
          { length: 65_536 + ins.p[1] * 7 },
          (_, i) => ((i * 7919 + ins.p[2]) % (2 * d)) - d,
        )
        : ins.p.slice(1).map((v) => (v % (2 * d)) - d); // negative indices too
      return dsl.take(a, idx, axis);
    }
    case "view":
      return view(ins, a, pick(ins.b));
  }
}

function view(ins: Extract<Instr, { k: "view" }>, a: Tensor, b: Tensor): Tensor {
  const p = ins.p;
  const r = a.ndim;
  switch (ins.op % 7) {
    case 0: { // transpose by a random permutation
      const perm = a.shape.map((_, i) => i).sort((x, y) =>
        ((p[x] * 7919) % 13) - ((p[y] * 7919) % 13)
      );
      return dsl.transpose(a, perm);
    }
    case 1: { // reshape: merge the first two axes, or split the only one
      if (r >= 2) return dsl.reshape(a, [a.shape[0] * a.shape[1], ...a.shape.slice(2)]);
      const n = a.size;
      const d = [2, 3].find((q) => n % q === 0 && n > q) ?? 1;
      return dsl.reshape(a, [d, n / d]);
    }
    case 2: { // slice
      const starts = a.shape.map((d, i) => p[i % 4] % d);
      const ends = a.shape.map((d, i) => starts[i] + 1 + (p[(i + 1) % 4] % (d - starts[i])));
      return dsl.slice(a, starts, ends);
    }
    case 3: // pad with a constant
      return dsl.pad(a, a.shape.map((_, i) => [p[i % 4] % 3, p[(i + 2) % 4] % 2]), (p[3] % 3) - 1);
    case 4: { // concat with a slice of itself, and with b when the shapes fit
      if (r === 0) return dsl.stack([a, dsl.tanh(a)]);
      const axis = p[0] % r;
      const part = dsl.slice(a, a.shape.map((_, i) => (i === axis ? p[1] % a.shape[i] : 0)));
      const fits = b.ndim === r && b.shape.every((d, i) => i === axis || d === a.shape[i]);
      return dsl.concat(fits ? [a, dsl.tanh(part), b] : [dsl.tanh(part), a], axis);
    }
    case 5: // broadcast along a new leading axis
      return r >= 3 ? dsl.sub(a, dsl.mean(a, 0, { keepDims: true })) : dsl.broadcastTo(a, [
        1 + (p[0] % 3),
        ...a.shape,
      ]);
    default: // expandDims then a reduction over the new axis
      return dsl.sum(dsl.expandDims(a, p[0] % (r + 1)), p[0] % (r + 1));
  }
}

/** A DAG with random f32 inputs of its input shapes. */
function withInputs(dags: fc.Arbitrary<Dag>, inputs = (s: number[], _i: number) => arbF32(s)) {
  return dags.chain((dag) => fc.tuple(fc.constant(dag), fc.tuple(...dag.inputs.map(inputs))));
}

/** checkProgram on random DAGs and on the gradient of a loss of their outputs. */
async function checkDags(
  dags: fc.Arbitrary<[Dag, HostArray[]]>,
  label: string,
  numRuns: number,
  opts: JitOptions = {},
  tol?: Tol,
  between?: Tol,
) {
  await checkAsyncProperty(
    fc.asyncProperty(dags, async ([dag, xs]) => {
      const f = (...ts: Tensor[]) => buildDag(dag, ...ts);
      const describe = () => JSON.stringify(dag);
      await checkProgram(f, xs, label, describe, opts, between ?? tol, tol);
      const argnums = xs.map((_, i) => i);
      const g = grad(lossOf(f), { argnums });
      await checkProgram(g, xs, `grad of ${label}`, describe, opts, between ?? tol, tol);
    }),
    { numRuns },
  );
}

Deno.test("jit random DAGs with several outputs: values, gradients, fused = unfused", async () => {
  await checkDags(withInputs(arbDag), "dag", 30);
});

/**
 * f16 programs round every op's result to half on both sides, so they agree to the few half ULPs
 * (2⁻¹⁰ relative each) a differently rounded f32 step (a transcendental, a sum's order) can flip
 * and later ops carry.
 */
const HALF: Tol = { rtol: 2e-3, atol: 2e-3, scaled: true };

/** Random f16 inputs: arbF32's values rounded to half. */
const arbF16 = (shape: number[]) =>
  arbF32(shape).map((x) => ({ ...x, dtype: "f16" as const, data: new Float16Array(x.data) }));

for (const halfStorage of [true, false]) {
  const words = halfStorage ? "16-bit words (array<f16>)" : "f32 words";
  Deno.test(`jit random DAGs on f16 inputs (mixed with f32 constants), f16 values in ${words}: values, gradients, fused = unfused`, async () => {
    const opts = { codegen: { halfStorage } };
    // FUSED between the two: bit-exact for f16 leaves but for values near 0 (a half ULP is 2⁻¹¹
    // relative), a few f32 ULPs for the f32 leaves that f32 constants promote to.
    await checkDags(withInputs(arbDag, arbF16), `f16 dag (${words})`, 12, opts, HALF, FUSED);
  });
}

/**
 * The same random DAG twice in one program, on inputs of its shape and one `grow` wider, and its
 * gradient: with `codegen` against the reference and, to a few ULPs, against `apart` (the
 * setting it changes). Returns how many of the programs `counts` held for (given the program
 * lowered with each setting).
 */
async function checkDagPairs(
  label: string,
  codegen: Partial<CodegenOptions>,
  apart: Partial<CodegenOptions>,
  grow: number,
  counts: (p: Program, apart: Program) => boolean,
  dags: fc.Arbitrary<Dag> = arbDag,
  between: Tol = FUSED,
  { inputs = arbF32, reference = DAG, numRuns = 16 }: {
    inputs?: (shape: number[]) => fc.Arbitrary<HostArray>;
    reference?: Tol;
    numRuns?: number;
  } = {},
): Promise<number> {
  const wider = (s: number[]) => s.map((d) => (d === 1 ? 1 : d + grow));
  const pairs = dags.chain((dag) =>
    fc.tuple(
      fc.constant(dag),
      fc.tuple(...dag.inputs.map((s) => inputs(s))),
      fc.tuple(...dag.inputs.map((s) => inputs(wider(s)))),
    )
  );
  let counted = 0;
  await checkAsyncProperty(
    fc.asyncProperty(pairs, async ([dag, xs, ys]) => {
      const n = xs.length;
      const f = (
        ...ts: Tensor[]
      ) => [buildDag(dag, ...ts.slice(0, n)), buildDag(dag, ...ts.slice(n))];
      const args = [...xs, ...ys];
      const describe = () => JSON.stringify(dag);
      const argnums = args.map((_, i) => i);
      for (
        const [g, what] of [[f, "dag"], [grad(lossOf(f), { argnums }), "grad of dag"]] as const
      ) {
        const opts = { codegen };
        await checkProgram(g, args, `${what}, ${label}`, describe, opts, between, reference);
        const other = await jit(g, { codegen: apart })(...args);
        assertTreeMatches(await jit(g, { codegen })(...args), other, between, `${what}: ${label}`);
        const lowered = await jit(g, { codegen }).lower(...args);
        if (counts(lowered, await jit(g, { codegen: apart }).lower(...args))) counted++;
      }
    }),
    { numRuns },
  );
  return counted;
}

Deno.test("jit random DAGs at two shapes in one program: kernels share pipelines by shape", async () => {
  // Kernels that differ only in sizes read them from a uniform buffer and share one text.
  const sharing = await checkDagPairs(
    "shared sizes",
    { shareShapes: true },
    { shareShapes: false },
    3,
    (p) => p.kernels.some((k) => k.params !== undefined),
  );
  if (sharing === 0) throw new Error("no random program had kernels that share by shape");
});

Deno.test("jit random DAGs twice in one program: grouped dispatches compute what separate kernels do", async () => {
  // The two copies are independent: kernels of one text, one from each copy, run as one dispatch
  // (kernel_groups.ts), and so do siblings inside a copy.
  const grouping = await checkDagPairs(
    "grouped",
    { groupKernels: true },
    { groupKernels: false },
    2,
    (p) => p.kernels.some((k) => k.name.startsWith("grouped")),
  );
  if (grouping < 8) throw new Error(`only ${grouping} random programs had a grouped dispatch`);
});

type PairOptions = Parameters<typeof checkDagPairs>[7];

/** checkDagPairs with co-products (fusion rule 9) against without; how many programs had them. */
const checkCoProducts = (label: string, between?: Tol, opts?: PairOptions) =>
  checkDagPairs(
    label,
    { matmulCoProducts: true },
    { matmulCoProducts: false },
    2,
    (p) => p.kernels.some((k) => k.ops.filter((op) => op === "matmul").length > 1),
    joinedProductDags,
    between,
    opts,
  );

/** checkDagPairs with products inlined into row kernels (rule 10) against without. */
const checkInlinedProducts = (label: string, between: Tol, opts?: PairOptions) =>
  checkDagPairs(
    label,
    { inlineProducts: 64 },
    { inlineProducts: 0 },
    6,
    (p) => p.kernels.some((k) => k.kind === "rowwise" && k.ops.includes("matmul")),
    rowProductDags,
    between,
    opts,
  );

Deno.test("jit random DAGs twice in one program: products computed beside each other compute what separate kernels do", async () => {
  // A product kernel whose epilogue reads another product at its own index computes both, each
  // into its own accumulators (matmulCoProducts, fusion rule 9): in the random programs and more
  // so in their gradients, where input gradients of two branches meet.
  const beside = await checkCoProducts("co-products");
  if (beside < 8) throw new Error(`only ${beside} random programs computed products side by side`);
});

Deno.test("jit random DAGs twice in one program: values recomputed where read compute what stored ones do", async () => {
  // Short elementwise chains over one stored array are recomputed in each kernel that reads them
  // (recomputeElementwise, rule 2's exception) instead of stored once: fewer buffers, same values.
  const fewer = await checkDagPairs(
    "recomputed",
    { recomputeElementwise: true },
    { recomputeElementwise: false },
    2,
    (p, apart) => stores(p) < stores(apart),
    sharedChainDags,
  );
  if (fewer < 4) throw new Error(`only ${fewer} random programs recomputed a stored value`);
});

Deno.test("jit random DAGs twice in one program: sibling reductions in one kernel compute what separate kernels do", async () => {
  // Reductions of one space over the same axes, the later reading the earlier at its output index
  // or broadcast back over the row, are one kernel (siblingReductions, fusion rule 11).
  const reductionKernels = (p: Program) => p.kernels.filter((k) => k.kind === "reduce").length;
  const fewer = await checkDagPairs(
    "sibling reductions",
    { siblingReductions: true },
    { siblingReductions: false },
    2,
    (p, apart) => reductionKernels(p) < reductionKernels(apart),
    siblingReductionDags,
  );
  if (fewer < 4) throw new Error(`only ${fewer} random programs reduced siblings in one kernel`);
});

/** Arrays a program's kernels write. */
const stores = (p: Program) => p.kernels.reduce((n, k) => n + k.written.length, 0);

Deno.test("jit random DAGs twice in one program: rows reduced by a workgroup each compute what one invocation per row does", async () => {
  // The second copy's inputs are 36 wider on each axis, so its reductions over trailing axes
  // have rows long enough for a workgroup per row (rowWorkgroup, rows_workgroup.ts).
  const rows = await checkDagPairs(
    "row workgroups",
    { rowWorkgroup: 64 },
    { rowWorkgroup: 0 },
    36,
    (p) => p.kernels.some((k) => k.wgsl.includes("row_part_")),
  );
  if (rows < 4) throw new Error(`only ${rows} random programs reduced rows in a workgroup`);
});

Deno.test("jit random DAGs twice in one program: products computed inside row-wise kernels compute what stored ones do", async () => {
  // A product that only a row-wise kernel reads is computed there, a dot product per element
  // (inlineProducts, fusion rule 10). With a workgroup per row: inline_products_test.ts.
  // A dot product per element sums in another order than the tiled product; gradients through
  // the norms of rows of near-equal values (ties among the edge values) magnify that past
  // FUSED (8.5e-5 relative under FC_SEED=1001), while both stay within DAG of the reference.
  const rows = await checkInlinedProducts("inlined products", DAG);
  if (rows < 10) throw new Error(`only ${rows} random programs computed a product inside a row`);
});

Deno.test("jit random f16 DAGs twice in one program: co-products and inlined products round as separate kernels do", async () => {
  // Each product still rounds to half where computed (a tile's seed, an inlined dot product), so
  // computing two products in one kernel changes no half bit (FUSED: f16 leaves exact but near 0);
  // an inlined dot product sums in another order, which may flip a half rounding.
  const f16 = { inputs: arbF16, reference: HALF, numRuns: 8 };
  const beside = await checkCoProducts("f16 co-products", FUSED, f16);
  const rows = await checkInlinedProducts("f16 inlined products", HALF, f16);
  if (beside < 4 || rows < 5) {
    throw new Error(`products side by side in ${beside} programs, inside rows in ${rows}`);
  }
});

Deno.test("jit a row-wise kernel never writes its output over an inlined product's operand", async () => {
  // Found under FC_SEED=1005: the softmax gradient's row-wise kernel computed a product of the
  // softmax's output inside (rule 10), read that output at its own index too, and the memory plan
  // wrote the gradient over it in place; each column's dot product then read overwritten values.
  const dag: Dag = {
    inputs: [[4, 4], [2, 2, 2]],
    instrs: [
      { k: "reduce", op: 569, a: 391, axes: 851, keepDims: true },
      { k: "row", op: 0, a: 842 },
      { k: "matmul", a: 952, b: 692 },
      { k: "row", op: 0, a: 0 },
      { k: "matmul", a: 219, b: 521 },
      { k: "reduce", op: 765, a: 901, axes: 182, keepDims: true },
      { k: "select", a: 677, b: 464 },
      { k: "binary", op: 221, a: 100, b: 15 },
      { k: "matmul", a: 632, b: 870 },
      { k: "matmul", a: 446, b: 772 },
    ],
    outputs: [213, 0],
  };
  const args = dag.inputs.map((s, i) => seeded(s, 40 + i, -2, 2));
  const f = (...ts: Tensor[]) => buildDag(dag, ...ts);
  const g = grad(lossOf(f), { argnums: [0, 1] });
  const codegen = { inlineProducts: 64 };
  const program = await jit(g, { codegen }).lower(...args);
  if (!program.kernels.some((k) => k.kind === "rowwise" && k.ops.includes("matmul"))) {
    throw new Error("no product was computed inside a row-wise kernel");
  }
  await checkProgram(g, args, "inlined softmax gradient", () => JSON.stringify(dag), { codegen });
});

Deno.test("jit a shared intermediate read by reductions, matmuls, views and outputs", async () => {
  // One value h with many consumers of every kind, and outputs at several stages.
  const f = (x: Tensor, w: Tensor) => {
    const h = dsl.tanh(dsl.matmul(x, w));
    const s = dsl.softmax(h);
    const m = dsl.max(h, -1, { keepDims: true });
    const t = dsl.transpose(h);
    return {
      h,
      s,
      centered: dsl.sub(h, m),
      gram: dsl.matmul(t, h),
      sliced: dsl.concat([dsl.slice(h, [1]), dsl.slice(h, [0], [1])], 0),
      total: dsl.add(dsl.sum(s), dsl.sum(dsl.mul(h, h))),
    };
  };
  const x = seeded([5, 6], 1), w = seeded([6, 7], 2);
  await checkProgram(f, [x, w], "shared", () => "shared intermediate");
  await checkProgram(grad(lossOf(f), { argnums: [0, 1] }), [x, w], "grad shared", () => "shared");
  // Every leaf is checked above; make sure the pytree has all of them.
  const out = await jit(f)(x, w);
  if (leaves(out).length !== 6) throw new Error("expected 6 outputs");
});

/** Seven inputs summed (more reads than a capped kernel may bind), a concat, a softmax. */
function wide(...xs: Tensor[]) {
  const total = xs.reduce((a, b) => dsl.add(a, dsl.tanh(b)));
  // A single concat of more operands than the cap cannot be split (the compiler says so).
  return [dsl.concat(xs.slice(0, 3), 0), dsl.mul(total, xs[0]), dsl.softmax(total)];
}
const WIDE_INPUTS = Array.from({ length: 7 }, (_, i) => seeded([3, 4], 50 + i));

Deno.test("jit on a device capped at 4 storage buffers per kernel: programs split, values hold", async () => {
  // The fusion pass materialises sub-expressions until no kernel binds more than 4 buffers.
  const device = await gpu({ maxStorageBuffers: 4 });
  await checkProgram(wide, WIDE_INPUTS, "wide", () => "7 inputs", { device });
  const program = await jit(wide, { device }).lower(...WIDE_INPUTS);
  if (program.kernels.some((k) => storageBindings(k) > 4)) throw new Error(String(program));
  await checkAsyncProperty(
    fc.asyncProperty(
      arbDag.chain((dag) =>
        fc.tuple(fc.constant(dag), fc.tuple(...dag.inputs.map((s) => arbF32(s))))
      ),
      async ([dag, xs]) => {
        const f = (...ts: Tensor[]) => buildDag(dag, ...ts);
        await checkProgram(f, xs, "capped dag", () => JSON.stringify(dag), { device });
      },
    ),
    { numRuns: 6 },
  );
  device.destroy();
});

Deno.test({
  name: "jit gradient on a device capped at 4 storage buffers per kernel",
  async fn() {
    const device = await gpu({ maxStorageBuffers: 4 });
    const g = grad(lossOf(wide), { argnums: [0, 3, 6] });
    await checkProgram(g, WIDE_INPUTS, "grad wide", () => "7 inputs", { device });
    device.destroy();
  },
});

Deno.test({
  name: "jit a merged two-output kernel whose first output reuses a buffer the second reads",
  async fn() {
    const f = (x: Tensor, w: Tensor, y: Tensor) => {
      const u = dsl.matmul(x, w); // a buffer (two uses), dead after the merged kernel
      const r0 = dsl.exp(y); // a buffer (read by two kernels), the same size as u
      return [dsl.add(dsl.add(u, u), r0), dsl.sum(r0)];
    };
    const x = seeded([2, 2], 1), w = seeded([2, 2], 2), y = seeded([2, 2], 3);
    await checkProgram(f, [x, w, y], "merged outputs", () => "u·u + exp(y)");
  },
});

/** DAGs over inputs with one axis of 65,536 to 120,000 (and at most 3 more small ones). */
const arbLargeDag: fc.Arbitrary<Dag> = fc.record({
  inputs: fc.tuple(
    fc.integer({ min: 65_536, max: 120_000 }),
    fc.integer({ min: 1, max: 3 }),
    fc.boolean(),
  ).map(([big, small, first]) => [first ? [big, small] : [small, big], [small, 1]]),
  instrs: fc.array(arbInstr, { minLength: 3, maxLength: 7 }),
  outputs: fc.array(nat, { minLength: 1, maxLength: 2 }),
  large: fc.constant(true),
});

Deno.test("jit random DAGs with an axis past 65,535: values, gradients, fused = unfused", async () => {
  const dags = withInputs(arbLargeDag, (s, i) => fc.constant(seeded(s, i)));
  await checkDags(dags, "large dag", 5);
});

/**
 * A device that reports a loop budget of 64 iterations per invocation and 4 workgroups per grid
 * dimension: reductions split at 7 elements, contractions at 31, scatters at 15 updates, rows of
 * row-wise kernels at 7, and every grid spreads over y and z, so CI runs each split path.
 */
const SMALL_DEVICE = { maxLoopIterations: 64, maxComputeWorkgroupsPerDimension: 4 };

Deno.test("jit on a device with lowered loop and grid limits: split paths, values hold", async () => {
  const device = await gpu({ limits: SMALL_DEVICE });
  const fixed: [string, Fn, HostArray[]][] = [
    ["sum/max/argmax over 500", (x: Tensor) => [dsl.sum(x), dsl.max(x), dsl.argmax(x, 0)], [
      seeded([500], 1),
    ]],
    ["sums along each axis", (x: Tensor) => [dsl.sum(x, 0), dsl.sum(x, 1), dsl.mean(x, [0, 2])], [
      seeded([30, 20, 3], 2),
    ]],
    ["softmax and layerNorm rows of 40", (x: Tensor) => [dsl.softmax(x), dsl.layerNorm(x)], [
      seeded([5, 40], 3),
    ]],
    ["matmul with K = 100", (a: Tensor, b: Tensor) => dsl.matmul(a, b), [
      seeded([6, 100], 4),
      seeded([100, 5], 5),
    ]],
    ["batched matmul over 40 batches", (a: Tensor, b: Tensor) => dsl.matmul(a, b), [
      seeded([40, 3, 4], 6),
      seeded([40, 4, 2], 7),
    ]],
    ["elementwise over 20,000", (x: Tensor) => dsl.tanh(dsl.mul(x, 3)), [seeded([20_000], 8)]],
  ];
  const kernels: Kernel[] = [];
  for (const [label, f, args] of fixed) {
    kernels.push(...(await jit(f, { device }).lower(...args)).kernels);
    await checkProgram(f, args, label, () => label, { device });
    await checkProgram(
      grad(lossOf(f), { argnums: args.map((_, i) => i) }),
      args,
      `grad ${label}`,
      () => label,
      {
        device,
      },
    );
  }
  // A scatter-add of 50 updates (a chain of 4 kernels) onto 60 rows (copied by its own kernel).
  const scatter = grad((t: Tensor, ix: Tensor) =>
    dsl.sum(dsl.mul(dsl.take(t, ix, 0), seeded([50, 2], 9)))
  );
  const idx: HostArray = {
    shape: [50],
    dtype: "i32",
    data: Int32Array.from({ length: 50 }, (_, i) => (i * 13) % 60 - 20),
  };
  const table = seeded([60, 2], 10);
  assertTreeMatches(
    await jit(scatter, { device })(table, idx),
    interpret(scatter, table, idx),
    "exact",
    "scatter",
  );
  const program = await jit(scatter, { device }).lower(table, idx);
  kernels.push(...program.kernels);
  // Every split path ran: reduction trees, split-K, no row-wise kernel past 7, a spread grid, a
  // scatter chain with its copy kernel; and nothing exceeds the lowered limits.
  const count = (p: (k: Kernel) => boolean) => kernels.filter(p).length;
  const paths = {
    tree: count((k) => k.kind === "reduce" && k.ops.includes("pad")),
    splitK: count((k) => k.kind === "matmul" && k.output === "f32[6,5]"),
    rowwise: count((k) => k.kind === "rowwise"),
    spread: count((k) => k.dispatch[1] > 1 || k.dispatch[2] > 1),
    scatters: count((k) => k.kind === "scatter" && !k.name.endsWith("_copy")),
    copies: count((k) => k.name.endsWith("_copy")),
  };
  const want = { tree: 4, splitK: 2, rowwise: 0, spread: 1, scatters: 4, copies: 1 };
  for (const [key, n] of Object.entries(want)) {
    const got = paths[key as keyof typeof paths];
    if (key === "rowwise" ? got !== 0 : got < n) {
      throw new Error(
        `split path ${key}: ${got} kernels (want ${key === "rowwise" ? 0 : `≥ ${n}`})`,
      );
    }
  }
  for (const k of kernels) {
    if (k.loopIterations >= 64 || k.dispatch.some((d) => d > 4)) {
      throw new Error(`kernel ${k.name} exceeds the lowered limits\n${String(program)}`);
    }
  }
  await checkDags(withInputs(arbDag), "small-device dag", 10, { device });
  device.destroy();
});

/**
 * A device reporting a 512-byte binding limit: every buffer over 128 f32 is bound as windows of
 * 128 (bindings at offsets into one buffer), so CI runs the windowed reads and writes that tensors
 * larger than a real device's binding limit (GPT-2's 147 MiB embedding on lavapipe's 128 MiB) take.
 * The fixed programs' tensors take at most 4 windows, so that every single op fits the 16 storage
 * bindings of the GL adapter too.
 */
Deno.test("jit with buffers over the device's binding limit: bound in windows, values hold", async () => {
  const device = await gpu({ limits: { maxStorageBufferBindingSize: 512 } });
  const table = seeded([40, 5], 1),
    x = seeded([10, 5], 2),
    idx: HostArray = {
      shape: [30],
      dtype: "i32",
      data: Int32Array.from({ length: 30 }, (_, i) => (i * 7) % 40 - 5),
    };
  const fixed: [string, Fn, HostArray[]][] = [
    ["elementwise over 200", (a: Tensor) => dsl.tanh(dsl.mul(a, 3)), [seeded([200], 3)]],
    ["a + b of [10, 20]", (a: Tensor, b: Tensor) => dsl.add(a, b), [
      seeded([10, 20], 4),
      seeded([10, 20], 5),
    ]],
    // An embedding and a tied head: a gather from, and x·Wᵀ against, a windowed table.
    ["embedding and tied head", (t: Tensor, h: Tensor) => {
      const e = dsl.take(t, idx, 0);
      return [e, dsl.softmax(dsl.matmul(h, dsl.transpose(t)))];
    }, [table, x]],
    ["row sums and max over [3, 90]", (a: Tensor) => [dsl.sum(a, 1), dsl.max(a, 0)], [
      seeded([3, 90], 6),
    ]],
  ];
  let windowed = 0;
  for (const [label, f, args] of fixed) {
    const program = await jit(f, { device }).lower(...args);
    windowed += program.kernels.filter((k) => k.ranges?.some((r) => r !== undefined)).length;
    await checkProgram(f, args, label, () => label, { device });
    const argnums = args.map((_, i) => i);
    await checkProgram(grad(lossOf(f), { argnums }), args, `grad ${label}`, () => label, {
      device,
    });
  }
  if (windowed < 4) throw new Error(`only ${windowed} kernels bound a buffer in windows`);
  if (device.info.limits.maxStorageBuffersPerShaderStage >= 24) {
    // Random programs over inputs of up to 6³ elements, and what they grow into (concatenations,
    // broadcasts): single ops on such operands can need more than the 16 bindings of the GL
    // adapter, so this part runs where a kernel may bind 24 or more (lavapipe: 32).
    const big = fc.record({
      inputs: fc.array(arbShape({ minRank: 1, maxRank: 3, maxDim: 6 }), {
        minLength: 2,
        maxLength: 3,
      }),
      instrs: fc.array(arbInstr, { minLength: 3, maxLength: 8 }),
      outputs: fc.array(nat, { minLength: 1, maxLength: 3 }),
    });
    await checkDags(withInputs(big), "windowed dag", 8, { device });
  }
  device.destroy();
});

Deno.test("lowering names a tensor larger than the device's buffer limit", async () => {
  const device = await gpu({ limits: { maxBufferSize: 4096 } });
  const f = (x: Tensor) => dsl.exp(x);
  let message = "";
  try {
    await jit(f, { device })(seeded([32, 40], 1));
  } catch (e) {
    message = (e as Error).message;
  }
  for (const part of ["f32[32,40]", "5120 bytes", "4096", "maxBufferSize"]) {
    if (!message.includes(part)) throw new Error(`missing "${part}" in: ${message}`);
  }
  await jit(f, { device })(seeded([32, 32], 1)); // 4096 bytes fit
  device.destroy();
});
