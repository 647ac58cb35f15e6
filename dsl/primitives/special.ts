/** Primitives with no arithmetic of their own: constants, iota, cast, stopGradient. */

import { type DType, isDType, isFloat } from "../dtype.ts";
import type { HostArray } from "../host_array.ts";
import * as lax from "../lax.ts";
import { definePrimitive, fail } from "../primitive.ts";
import { alloc, f32ToI32, forEachIndex, mapElements } from "../reference.ts";
import { formatShape, isValidShape, normalizeAxis } from "../shape.ts";
import { elementwiseWgsl } from "./wgsl.ts";

definePrimitive<{ value: HostArray }>({
  name: "constant",
  abstractEval(_inputs, { value }) {
    return { shape: value.shape, dtype: value.dtype };
  },
  evaluate(_inputs, { value }, ctx) {
    const out = alloc(value.shape, value.dtype, ctx);
    out.data.set(value.data);
    return out;
  },
  wgsl: { kind: "constant" },
});

definePrimitive<{ shape: number[]; axis: number; dtype: DType }>({
  name: "iota",
  abstractEval(_inputs, { shape, axis, dtype }) {
    if (!isValidShape(shape)) fail("iota", `invalid shape ${JSON.stringify(shape)}`);
    if (normalizeAxis(axis, shape.length) !== axis) {
      fail("iota", `axis ${axis} out of range for shape ${formatShape(shape)}`);
    }
    if (dtype === "bool") fail("iota", "dtype must be f32 or i32");
    return { shape, dtype };
  },
  evaluate(_inputs, { shape, axis, dtype }, ctx) {
    const out = alloc(shape, dtype, ctx);
    forEachIndex(shape, (flat, index) => (out.data[flat] = index[axis]));
    return out;
  },
  wgsl: {
    kind: "inline",
    emit: ({ index, params }) =>
      isFloat(params.dtype) ? `f32(${index[params.axis]})` : `(${index[params.axis]})`,
  },
});

definePrimitive<{ dtype: DType }>({
  name: "cast",
  abstractEval([x], { dtype }) {
    if (!isDType(dtype)) fail("cast", `unknown dtype ${JSON.stringify(dtype)}`, [x]);
    return { shape: x.shape, dtype };
  },
  vjp(g, { inputs: [x], output }) {
    // Only float → float casts carry gradient; integer and bool values are not differentiable.
    return [isFloat(x.dtype) && isFloat(output.dtype) ? lax.cast(g, x.dtype) : null];
  },
  evaluate([x], { dtype }, ctx) {
    if (dtype === "bool") return mapElements([x], dtype, ctx, (v) => (v !== 0 ? 1 : 0));
    if (dtype === "i32") {
      return mapElements([x], dtype, ctx, isFloat(x.dtype) ? f32ToI32 : (v) => v);
    }
    return mapElements([x], dtype, ctx, (v) => v);
  },
  wgsl: elementwiseWgsl(([x], [input], { dtype }) => {
    const from = input.dtype;
    if (from === dtype) return x;
    // Kernels hold f16 values as f32, already rounded to half where computed: a cast from f16 is
    // free, a cast to it rounds (`f16_round`, added where a kernel calls it).
    // f32 → bool on the bits (NaN is true): llvmpipe compiles `x != 0.0f` as an ordered compare.
    if (dtype === "bool") {
      return isFloat(from) ? `((bitcast<u32>(${x}) & 0x7fffffffu) != 0u)` : `(${x} != 0i)`;
    }
    if (from === "bool") {
      return isFloat(dtype) ? `select(0.0f, 1.0f, ${x})` : `select(0i, 1i, ${x})`;
    }
    if (dtype === "i32") return `f32_to_i32(${x})`;
    if (dtype === "f16") return isFloat(from) ? `f16_round(${x})` : `f16_round(f32(${x}))`;
    return isFloat(from) ? x : `f32(${x})`;
  }, ["f32_to_i32"]),
});

definePrimitive({
  name: "stopGradient",
  abstractEval([x]) {
    return { shape: x.shape, dtype: x.dtype };
  },
  vjp: () => [null],
  evaluate([x], _p, ctx) {
    return mapElements([x], x.dtype, ctx, (v) => v);
  },
  wgsl: elementwiseWgsl(([x]) => x),
});

/**
 * Identity that stops the compiler from identifying a recomputed value with the original one
 * (`checkpoint`): no pass folds it, so the nodes computed from it stay distinct. Gradients pass.
 */
definePrimitive({
  name: "checkpointBarrier",
  abstractEval([x]) {
    return { shape: x.shape, dtype: x.dtype };
  },
  vjp: (ct) => [ct],
  evaluate([x], _p, ctx) {
    return mapElements([x], x.dtype, ctx, (v) => v);
  },
  wgsl: elementwiseWgsl(([x]) => x),
});
