/**
 * Host-side 16-bit floats (runtime/io/half.ts): rounding to nearest even, specials, and the packed
 * layout (element 2i in a word's low half) that the device's packed inputs read.
 */

import assert from "node:assert/strict";
import { packHalves, roundedTo, unpackHalves } from "../../../runtime/io/half.ts";
import { checkProperty, fc } from "../../helpers/property.ts";

Deno.test("bf16 and f16 round to nearest even, keep specials and overflow to infinity", () => {
  const ulp = 2 ** -7; // bf16's spacing in [1, 2)
  const bf = Array.from(roundedTo("bf16", [1 + ulp / 2, 1 + 1.5 * ulp, 1 + ulp / 2 + 2 ** -20]));
  assert.deepEqual(bf, [1, 1 + 2 * ulp, 1 + ulp]);
  const half = Array.from(roundedTo("f16", [1 + 2 ** -11, 65504, 65520, -1e6, 2 ** -24, 1e-9]));
  assert.deepEqual(half, [1, 65504, Infinity, -Infinity, 2 ** -24, 0]);
  for (const format of ["bf16", "f16"] as const) {
    const special = Array.from(roundedTo(format, [NaN, Infinity, -Infinity, -0]));
    assert.ok(Number.isNaN(special[0]));
    assert.deepEqual(special.slice(1), [Infinity, -Infinity, -0]);
  }
});

Deno.test("packed words: element 2i in the low half; an odd length leaves the last high half 0", () => {
  const words = packHalves("bf16", Float32Array.of(1, -2, 0.5));
  assert.deepEqual(Array.from(words), [0xc0003f80, 0x00003f00]);
  assert.deepEqual(Array.from(unpackHalves("bf16", words, 3)), [1, -2, 0.5]);
  assert.deepEqual(Array.from(packHalves("f16", [1, -2])), [0xc0003c00]);
});

Deno.test("bf16: the bit-level fast path equals the general rounding; rounding is within half an ulp and idempotent", () => {
  checkProperty(
    fc.property(
      fc.array(fc.float({ noDefaultInfinity: false, noNaN: true }), {
        minLength: 1,
        maxLength: 33,
      }),
      (xs) => {
        const fast = packHalves("bf16", Float32Array.from(xs));
        const general = packHalves("bf16", Array.from(Float32Array.from(xs)));
        assert.deepEqual(Array.from(fast), Array.from(general));
        const r = roundedTo("bf16", Float32Array.from(xs));
        assert.deepEqual(Array.from(roundedTo("bf16", r)), Array.from(r));
        Float32Array.from(xs).forEach((x, i) => {
          if (!Number.isFinite(r[i]) || x === 0) return;
          // Half an ulp: relative for normal values, bf16's half subnormal spacing below.
          const bound = Math.max(2 ** -8 * Math.abs(x), 2 ** -134);
          assert.ok(Math.abs(r[i] - x) <= bound, `${x} → ${r[i]}`);
        });
      },
    ),
  );
});
