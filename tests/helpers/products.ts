/**
 * Programs of a few independent products x_i·W_i of one output shape, each through an epilogue:
 * what the code generator's text-sharing passes (epilogue variants, grouped dispatches) merge.
 */

import {
  type CodegenOptions,
  type Graph,
  type HostArray,
  interpret,
  type Tensor,
  trace,
} from "../../mod.ts";
import { fc } from "./property.ts";
import { randomArray } from "./models.ts";
import { checkAsyncProperty } from "../runtime/jit_helpers.ts";

/** Sizes of such a program: m×n outputs, one contraction per product, NN or NT (W as [n, k]). */
export interface ProductSizes<E> {
  m: number;
  n: number;
  ks: number[];
  epilogues: E[];
  nt: boolean;
  seed: number;
}

/**
 * Random sizes of 2 to `most` products, each with one of `epilogues`; all sizes multiples of 4 half
 * of the time (the vec4 kernels, where most merging happens).
 */
export function arbProducts<E>(
  epilogues: readonly E[],
  most: number,
): fc.Arbitrary<ProductSizes<E>> {
  return fc.record({
    m: fc.integer({ min: 1, max: 40 }),
    n: fc.integer({ min: 1, max: 24 }),
    ks: fc.array(fc.integer({ min: 1, max: 24 }), { minLength: 2, maxLength: most }),
    all: fc.array(fc.constantFrom(...epilogues), { minLength: most, maxLength: most }),
    aligned: fc.boolean(),
    nt: fc.boolean(),
    seed: fc.integer({ min: 0, max: 1000 }),
  }).map(({ m, n, ks, all, aligned, nt, seed }) => {
    const up = (d: number) => (aligned ? 4 * Math.ceil(d / 4) : d);
    return { m: up(m), n: up(n), ks: ks.map(up), epilogues: all.slice(0, ks.length), nt, seed };
  });
}

/** Each product's x [m, k], W ([k, n], or [n, k] when `nt`) and an extra [m, n] operand. */
export function productInputs(
  m: number,
  n: number,
  ks: readonly number[],
  nt: boolean,
  seed: number,
): HostArray[] {
  return ks.flatMap((k, i) => [
    randomArray([m, k], seed + 3 * i),
    randomArray(nt ? [n, k] : [k, n], seed + 3 * i + 1),
    randomArray([m, n], seed + 3 * i + 2),
  ]);
}

/** The graph of `f` traced on arguments of `args`' shapes (all f32). */
export function traceProducts(f: (...ts: Tensor[]) => Tensor[], args: readonly HostArray[]): Graph {
  return trace(f, ...args.map((a) => ({ shape: [...a.shape], dtype: "f32" as const })));
}

/** A program of products, its arguments, the reference's results, and a code generator setting. */
export interface ProductCase {
  f: (...ts: Tensor[]) => Tensor[];
  args: HostArray[];
  want: unknown;
  epilogues: string;
  label: string;
  codegen: Partial<CodegenOptions>;
}

/**
 * For random product programs (`arbProducts(epilogues, most)`, built by `build`), runs `check` under
 * each labelled code generator setting; returns how many cases `check` counted.
 */
export async function checkProductPrograms<E>(
  epilogues: readonly E[],
  most: number,
  build: (epilogues: E[], nt: boolean) => (...ts: Tensor[]) => Tensor[],
  configs: readonly [string, Partial<CodegenOptions>][],
  check: (c: ProductCase) => Promise<boolean>,
  numRuns: number,
): Promise<number> {
  let counted = 0;
  await checkAsyncProperty(
    fc.asyncProperty(arbProducts(epilogues, most), async ({ m, n, ks, epilogues, nt, seed }) => {
      const f = build(epilogues, nt);
      const args = productInputs(m, n, ks, nt, seed);
      const want = interpret(f, ...args);
      for (const [label, codegen] of configs) {
        const c = { f, args, want, epilogues: String(epilogues), label, codegen };
        if (await check(c)) counted++;
      }
    }),
    { numRuns },
  );
  return counted;
}
