/**
 * Random tensor programs for differential testing (optimised vs raw graphs now; compiled vs
 * interpreted later). A program is an expression tree over two inputs of fixed shape; it mixes
 * elementwise ops, broadcasting against reductions, views, matmuls and repeated subexpressions
 * (so CSE has something to merge).
 */

import * as dsl from "../../mod.ts";
import type { Tensor } from "../../mod.ts";
import { arbNumber } from "./arrays.ts";
import { fc } from "./property.ts";

export type Expr =
  | { kind: "x" }
  | { kind: "y" }
  | { kind: "const"; value: number }
  | { kind: "unary"; op: "tanh" | "neg" | "exp" | "sigmoid" | "abs" | "square"; a: Expr }
  | { kind: "binary"; op: "add" | "sub" | "mul" | "maximum"; a: Expr; b: Expr }
  | { kind: "twice"; op: "add" | "mul"; a: Expr }
  | { kind: "reduce"; op: "sum" | "max" | "mean"; axis: 0 | 1; a: Expr }
  | { kind: "transpose2"; a: Expr }
  | { kind: "gram"; a: Expr }
  | { kind: "sliceConcat"; a: Expr }
  | { kind: "scaled"; factor: number; a: Expr };

export const PROGRAM_SHAPE = [3, 4] as const;

export const arbExpr: fc.Arbitrary<Expr> = fc.letrec<{ expr: Expr }>((tie) => ({
  expr: fc.oneof(
    { depthSize: "medium", maxDepth: 7, withCrossShrink: true },
    fc.constant<Expr>({ kind: "x" }),
    fc.constant<Expr>({ kind: "y" }),
    arbNumber(-2, 2).map((value): Expr => ({ kind: "const", value })),
    fc.record({
      kind: fc.constant("unary" as const),
      op: fc.constantFrom("tanh", "neg", "exp", "sigmoid", "abs", "square") as fc.Arbitrary<
        "tanh"
      >,
      a: tie("expr"),
    }),
    fc.record({
      kind: fc.constant("binary" as const),
      op: fc.constantFrom("add", "sub", "mul", "maximum") as fc.Arbitrary<"add">,
      a: tie("expr"),
      b: tie("expr"),
    }),
    fc.record({
      kind: fc.constant("twice" as const),
      op: fc.constantFrom("add", "mul") as fc.Arbitrary<"add">,
      a: tie("expr"),
    }),
    fc.record({
      kind: fc.constant("reduce" as const),
      op: fc.constantFrom("sum", "max", "mean") as fc.Arbitrary<"sum">,
      axis: fc.constantFrom(0, 1) as fc.Arbitrary<0>,
      a: tie("expr"),
    }),
    fc.record({ kind: fc.constant("transpose2" as const), a: tie("expr") }),
    fc.record({ kind: fc.constant("gram" as const), a: tie("expr") }),
    fc.record({ kind: fc.constant("sliceConcat" as const), a: tie("expr") }),
    fc.record({
      kind: fc.constant("scaled" as const),
      factor: fc.constantFrom(0, 1, -1, 0.5, 2),
      a: tie("expr"),
    }),
  ),
})).expr;

/** Builds the traced computation of `e` on inputs x, y (both f32[3,4]); result is f32[3,4]. */
export function buildExpr(e: Expr, x: Tensor, y: Tensor): Tensor {
  const go = (e: Expr): Tensor => {
    switch (e.kind) {
      case "x":
        return x;
      case "y":
        return y;
      case "const":
        return dsl.full([...PROGRAM_SHAPE], e.value);
      case "unary": {
        const a = go(e.a);
        // exp of an unbounded value overflows to Inf quickly; keep it bounded with tanh.
        return e.op === "exp" ? dsl.exp(dsl.tanh(a)) : dsl[e.op](a);
      }
      case "binary":
        return dsl[e.op](go(e.a), go(e.b));
      case "twice": {
        const a = go(e.a);
        return dsl[e.op](go(e.a), a); // the same subexpression built twice: a CSE target
      }
      case "reduce": {
        const a = go(e.a);
        return dsl.add(a, dsl[e.op](a, e.axis, { keepDims: true })); // reduce, then broadcast back
      }
      case "transpose2":
        return dsl.transpose(dsl.transpose(go(e.a)));
      case "gram": {
        const a = go(e.a);
        return dsl.mul(dsl.matmul(dsl.matmul(a, dsl.transpose(a)), a), 0.1);
      }
      case "sliceConcat": {
        const a = go(e.a);
        return dsl.concat([dsl.slice(a, [0, 2]), dsl.slice(a, [0, 0], [3, 2])], 1);
      }
      case "scaled":
        return dsl.mul(go(e.a), e.factor);
    }
  };
  return go(e);
}
