/**
 * Constant folding and algebraic simplification.
 *
 * A *splat* is a scalar constant, possibly reshaped or broadcast (how the DSL writes `full`).
 * An elementwise op whose operands are all splats is evaluated once on the CPU reference and
 * becomes a splat; identities such as x·1, x+0, neg(neg x), reshape∘reshape and transpose∘transpose
 * are removed, and Aᵀ·Bᵀ read down columns becomes (B·A)ᵀ. Autodiff emits many of these (seeds
 * of 1, zero cotangents), so this pass is what keeps a gradient's IR readable and its kernels lean.
 */

import {
  getPrimitive,
  type Graph,
  type HostArray,
  isElementwise,
  type Node,
} from "../../dsl/mod.ts";
import { allocData } from "../../dsl/host_array.ts";
import { type Emitter, rewriteGraph } from "./rewrite.ts";

/** The scalar a splat node holds, or undefined. */
export function splatValue(node: Node): number | undefined {
  let n = node;
  while (n.op === "reshape" || n.op === "broadcast") n = n.inputs[0];
  if (n.op === "constant" && n.size === 1) return (n.params.value as HostArray).data[0];
  return undefined;
}

function scalarConstant(value: number, node: Node, emitter: Emitter): Node {
  const data = allocData(node.dtype, 1).fill(value);
  const v: HostArray = { shape: [], dtype: node.dtype, data };
  return emitter.emit("constant", { value: v }, [], [], node.dtype);
}

function emitSplat(value: number, node: Node, emitter: Emitter): Node {
  const s = scalarConstant(value, node, emitter);
  if (node.shape.length === 0) return s;
  const ones = node.shape.map(() => 1);
  const r = emitter.emit("reshape", { shape: ones }, [s], ones, node.dtype);
  return emitter.emit("broadcast", { shape: [...node.shape] }, [r], node.shape, node.dtype);
}

function foldSplats(node: Node, inputs: readonly Node[], emitter: Emitter): Node | undefined {
  if (!isElementwise(node.op) || inputs.length === 0) return undefined;
  const values = inputs.map(splatValue);
  if (values.some((v) => v === undefined)) return undefined;
  const scalars: HostArray[] = inputs.map((x, i) => ({
    shape: [],
    dtype: x.dtype,
    data: allocData(x.dtype, 1).fill(values[i]!),
  }));
  const result = getPrimitive(node.op).evaluate(scalars, node.params, { precision: "f32" });
  return emitSplat(result.data[0], node, emitter);
}

function composePerms(inner: readonly number[], outer: readonly number[]): number[] {
  return outer.map((p) => inner[p]);
}

function simplify(node: Node, inputs: readonly Node[], emitter: Emitter): Node | undefined {
  const [a, b] = inputs;
  const va = a && splatValue(a);
  const vb = b && splatValue(b);
  switch (node.op) {
    case "add":
      if (vb === 0) return a;
      if (va === 0) return b;
      return undefined;
    case "sub":
      return vb === 0 ? a : undefined;
    case "mul":
      if (vb === 1) return a;
      if (va === 1) return b;
      return undefined;
    case "div":
      return vb === 1 ? a : undefined;
    case "neg":
      return a.op === "neg" ? a.inputs[0] : undefined;
    case "cast":
      return a.dtype === node.dtype ? a : undefined;
    case "where": {
      const c = splatValue(a);
      if (c !== undefined) return c ? inputs[1] : inputs[2];
      return inputs[1] === inputs[2] ? inputs[1] : undefined;
    }
    case "reshape": {
      const src = a.op === "reshape" ? a.inputs[0] : a;
      if (
        src.shape.length === node.shape.length && src.shape.every((d, i) => d === node.shape[i])
      ) {
        return src;
      }
      return src === a
        ? undefined
        : emitter.emit("reshape", node.params, [src], node.shape, node.dtype);
    }
    case "broadcast":
      return a.shape.every((d, i) => d === node.shape[i]) ? a : undefined;
    case "transpose": {
      const perm = node.params.perm as number[];
      if (a.op !== "transpose") return undefined;
      const composed = composePerms(a.params.perm as number[], perm);
      if (composed.every((p, i) => p === i)) return a.inputs[0];
      return emitter.emit("transpose", { perm: composed }, [a.inputs[0]], node.shape, node.dtype);
    }
    case "matmul":
      return transposeProduct(node, a, b, emitter);
    default:
      return undefined;
  }
}

/**
 * Aᵀ·Bᵀ → (B·A)ᵀ where both operands are transposes that read their array down its columns (the
 * operand's rows axis is the array's last): the product then reads rows, and its consumer gets a
 * transposed view, which a matmul reads in place (TN) or an elementwise kernel through its index.
 * HD-PiSSA's projected gradient Bᵀ·δᵀ becomes (δ·B)ᵀ, with no copy of Bᵀ.
 */
function transposeProduct(node: Node, a: Node, b: Node, emitter: Emitter): Node | undefined {
  const r = node.shape.length;
  const downColumns = (x: Node) =>
    x.op === "transpose" && (x.params.perm as number[])[r - 2] === r - 1;
  if (!downColumns(a) || !downColumns(b)) return undefined;
  const swap = node.shape.map((_, i) => (i < r - 2 ? i : 2 * r - 3 - i));
  const swapped = (shape: readonly number[]) => swap.map((p) => shape[p]);
  const flip = (x: Node) => {
    const perm = composePerms(x.params.perm as number[], swap);
    if (perm.every((p, i) => p === i)) return x.inputs[0];
    return emitter.emit("transpose", { perm }, [x.inputs[0]], swapped(x.shape), x.dtype);
  };
  const product = emitter.emit("matmul", {}, [flip(b), flip(a)], swapped(node.shape), node.dtype);
  return emitter.emit("transpose", { perm: swap }, [product], node.shape, node.dtype);
}

/** Folds splat-only elementwise ops and removes algebraic identities. */
export function foldConstants(graph: Graph): Graph {
  return rewriteGraph(graph, (node, inputs, emitter) => {
    if (node.op === "constant") return undefined;
    return foldSplats(node, inputs, emitter) ?? simplify(node, inputs, emitter);
  });
}
