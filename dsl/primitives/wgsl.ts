/**
 * Shared pieces of the primitives' WGSL emitters: literals, NaN-safe helper functions, and the
 * rule shape of an elementwise primitive. WGSL leaves several IEEE cases undefined (pow of a
 * negative base, tanh overflow, NaN in max), so the helpers pin them to the CPU reference's
 * behaviour.
 */

import type { DType } from "../dtype.ts";
import type { AbstractValue } from "../graph.ts";
import type { WgslRule } from "../primitive.ts";

/** An exact WGSL literal (f32 via its bits when not finite). */
export function wgslLiteral(value: number, dtype: DType): string {
  if (dtype === "bool") return value ? "true" : "false";
  if (dtype === "i32") {
    const v = value | 0;
    return v === -2147483648 ? "i32(-2147483647 - 1)" : `${v}i`;
  }
  const f = Math.fround(value);
  // Non-finite values through a function call: a constant expression that evaluates to ±inf or
  // NaN is a shader-creation error in WGSL (Chrome's Tint enforces it; naga does not).
  if (Number.isNaN(f)) return "f32_bits(0x7fc00000u)";
  if (f === Infinity) return "f32_bits(0x7f800000u)";
  if (f === -Infinity) return "f32_bits(0xff800000u)";
  if (Object.is(f, -0)) return "(-0.0f)";
  const s = String(f);
  return f < 0 ? `(${s}f)` : `${s}f`;
}

export const WGSL_HELPERS = {
  // A runtime bitcast (function arguments are not constant expressions).
  f32_bits: `fn f32_bits(b: u32) -> f32 { return bitcast<f32>(b); }`,
  is_nan: `fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }`,
  max_nan: `fn max_nan(a: f32, b: f32) -> f32 {
  if (is_nan(a) || is_nan(b)) { return a + b; }
  return max(a, b);
}`,
  // Mesa computes tanh as (e²ˣ − 1)/(e²ˣ + 1): an absolute error of ≈1e-7 near 0, so tanh(1e-35)
  // read as 3e-8 (WGSL bounds tanh's error only as sinh/cosh's). Below 1/8 the odd Taylor
  // polynomial through x⁹ is within 1e-11 relative; past 15, ±1 (no overflow).
  tanh_safe: `fn tanh_safe(x: f32) -> f32 {
  let a = abs(x);
  if (a > 15.0f) { return sign(x); }
  if (a < 0.125f) {
    let x2 = x * x;
    return x * (1.0f + x2 * (-0.33333333f + x2 * (0.13333333f + x2 * (-0.053968254f + x2 * 0.021869488f))));
  }
  return tanh(x);
}`,
  erf_f32: `fn erf_f32(x: f32) -> f32 {
  let z = abs(x);
  if (z < 0.5f) {
    let x2 = x * x;
    return 1.1283791671f * x * (1.0f + x2 * (-0.3333333333f + x2 * (0.1f + x2 * (-0.0238095238f + x2 * 0.0046296296f))));
  }
  let t = 1.0f / (1.0f + 0.3275911f * z);
  let poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  let r = 1.0f - poly * exp(-z * z);
  return select(-r, r, x >= 0.0f);
}`,
  // Math.pow's special cases: x⁰ = 1 (even for NaN x); 1^±Inf = NaN; ±0 and ±Inf keep the sign
  // of x for odd integer y (-0⁻¹ = -Inf, (-Inf)^0.5 = +Inf); a finite negative base needs an
  // integer exponent. Signs and infinities are tested on the bits (WGSL may assume no Inf).
  pow_f32: `fn pow_f32(x: f32, y: f32) -> f32 {
  if (y == 0.0f) { return 1.0f; }
  if (is_nan(x) || is_nan(y)) { return f32_bits(0x7fc00000u); }
  let ax = bitcast<u32>(x) & 0x7fffffffu;
  let y_inf = (bitcast<u32>(y) & 0x7fffffffu) == 0x7f800000u;
  if (ax == 0x3f800000u && y_inf) { return f32_bits(0x7fc00000u); }
  let odd = floor(y) == y && floor(y * 0.5f) * 2.0f != y;
  let negative = (bitcast<u32>(x) >> 31u) == 1u;
  if (ax == 0u || ax == 0x7f800000u) {
    let big = (ax == 0u) == (y < 0.0f);
    let r = select(0.0f, f32_bits(0x7f800000u), big);
    return select(r, -r, negative && odd);
  }
  if (negative && floor(y) != y) { return f32_bits(0x7fc00000u); }
  let p = exp2(y * log2(abs(x)));
  return select(p, -p, negative && odd);
}`,
  // Rounds to the nearest f16 value, kept as f32 (kernels hold f16 values as f32). It needs no
  // shader-f16. pack2x16float leaves out-of-range inputs indeterminate, so they are clamped first
  // and the overflow to ±inf (from 65520 up, where round-to-nearest-even goes) is put back.
  f16_round: `fn f16_round(x: f32) -> f32 {
  let h = unpack2x16float(pack2x16float(vec2<f32>(clamp(x, -65504.0f, 65504.0f), 0.0f))).x;
  let inf = bitcast<f32>(0x7f800000u | (bitcast<u32>(x) & 0x80000000u));
  return select(select(h, inf, abs(x) >= 65520.0f), x, is_nan(x));
}`,
  f32_to_i32: `fn f32_to_i32(x: f32) -> i32 {
  if (is_nan(x)) { return 0i; }
  if (x >= 2147483648.0f) { return 2147483647i; }
  if (x <= -2147483648.0f) { return i32(-2147483647 - 1); }
  return i32(x);
}`,
} as const;

export type WgslHelperName = keyof typeof WGSL_HELPERS;

/** Helper functions a helper depends on (emitted before it). */
export const WGSL_HELPER_DEPS: Partial<Record<WgslHelperName, WgslHelperName[]>> = {
  max_nan: ["is_nan"],
  pow_f32: ["is_nan"],
  f32_to_i32: ["is_nan"],
  f16_round: ["is_nan"],
};

function pickHelpers(names: readonly WgslHelperName[]): Record<string, string> {
  const out: Record<string, string> = {};
  const add = (n: WgslHelperName) => {
    for (const d of WGSL_HELPER_DEPS[n] ?? []) add(d);
    out[n] = WGSL_HELPERS[n];
  };
  names.forEach(add);
  return out;
}

/**
 * The WGSL rule of an elementwise primitive: `expr` gets the operand expressions (read at the
 * output index) and the operand avals.
 */
export function elementwiseWgsl<P>(
  expr: (args: string[], inputs: readonly AbstractValue[], params: P) => string,
  helpers: readonly WgslHelperName[] = [],
): WgslRule<P> {
  return {
    kind: "inline",
    emit: (ctx) => expr(ctx.inputs.map((_, k) => ctx.read(k, ctx.index)), ctx.inputs, ctx.params),
    helpers: pickHelpers(helpers),
    elementwise: true,
  };
}
