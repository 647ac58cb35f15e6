/**
 * Packed 16-bit storage of f32 inputs: a frozen weight kept on the device as bfloat16 or IEEE half
 * takes half the bytes. The program still computes in f32: each read widens the value inside the
 * kernel that reads it. Two elements share one u32 word (element 2i in the low half, as a
 * little-endian array of 16-bit values lays them out), and four share one vec2<u32>, which is what
 * the vectorised matmul loads take in place of a vec4<f32>.
 */

/** A 16-bit storage format of an f32 input. */
export type PackedFormat = "bf16" | "f16";

/** The packed formats, in the order errors list them. */
export const PACKED_FORMATS: readonly PackedFormat[] = ["bf16", "f16"];

/** Bytes of the buffer holding `elements` packed elements (whole words, at least one). */
export function packedBytes(elements: number): number {
  return 4 * Math.max(1, Math.ceil(elements / 2));
}

/** WGSL helpers that widen packed words: one element of a word, and four of a vec2<u32>. */
export const PACKED_HELPERS: Record<PackedFormat, { one: string; four: string }> = {
  bf16: {
    one: "fn bf16_at(w: u32, odd: bool) -> f32 {\n" +
      "  return bitcast<f32>(select(w << 16u, w & 0xffff0000u, odd));\n}",
    four: "fn bf16_x4(v: vec2<u32>) -> vec4<f32> {\n" +
      "  return bitcast<vec4<f32>>(vec4<u32>(v.x << 16u, v.x & 0xffff0000u, v.y << 16u, " +
      "v.y & 0xffff0000u));\n}",
  },
  f16: {
    one: "fn f16_at(w: u32, odd: bool) -> f32 {\n" +
      "  let h = unpack2x16float(w);\n  return select(h.x, h.y, odd);\n}",
    four: "fn f16_x4(v: vec2<u32>) -> vec4<f32> {\n" +
      "  return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));\n}",
  },
};

/** The helper names of `format` (`bf16_at`, `bf16_x4`, …). */
export function packedHelperNames(format: PackedFormat): { one: string; four: string } {
  return { one: `${format}_at`, four: `${format}_x4` };
}
