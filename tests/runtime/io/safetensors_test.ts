import assert from "node:assert/strict";
import { join } from "node:path";
import type { HostArray } from "../../../dsl/host_array.ts";
import {
  parseSafetensors,
  readSafetensors,
  readSafetensorsFile,
  serializeSafetensors,
  writeSafetensors,
} from "../../../runtime/io/safetensors.ts";

const f32 = (shape: number[], values: number[]): HostArray => ({
  shape,
  dtype: "f32",
  data: Float32Array.from(values),
});
const i32 = (shape: number[], values: number[]): HostArray => ({
  shape,
  dtype: "i32",
  data: Int32Array.from(values),
});

/** Hand-built file bytes: header JSON (unpadded, as other writers may produce) + data. */
function fileBytes(header: unknown, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const h = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

Deno.test("safetensors: round trip of F32 and I32 with metadata; header aligned to 8 bytes", async () => {
  const tensors = {
    "b.weight": f32([2, 3], [1, -2, 3.5, 1e-30, -0, 7]),
    a: i32([4], [1, -1, 2 ** 31 - 1, -(2 ** 31)]),
    s: f32([], [42]),
  };
  const bytes = await serializeSafetensors(tensors, { note: "hi" });
  const headerSize = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(headerSize % 8, 0);
  const back = await parseSafetensors(bytes);
  assert.deepEqual(back.tensors, tensors);
  assert.equal(back.metadata.note, "hi");
  assert.match(back.metadata.sha256, /^[0-9a-f]{64}$/);
  assert.deepEqual(back.dtypes, { a: "I32", "b.weight": "F32", s: "F32" });
});

Deno.test("safetensors: F16 and BF16 storage round to nearest even and widen back exactly", async () => {
  const values = [0, 1, -2.5, 65504, 1e-7, 3.14159, -0.1, 1 / 3, 70000, Infinity, -Infinity];
  const t = { x: f32([values.length], values) };
  const half = await parseSafetensors(await serializeSafetensors(t, {}, { floatDType: "F16" }));
  const bf = await parseSafetensors(await serializeSafetensors(t, {}, { floatDType: "BF16" }));
  // Expected values computed independently: f16 has 10 mantissa bits, bf16 7.
  assert.deepEqual(Array.from(half.tensors.x.data), [
    0,
    1,
    -2.5,
    65504,
    1.1920928955078125e-7,
    3.140625,
    -0.0999755859375,
    0.333251953125,
    Infinity,
    Infinity,
    -Infinity,
  ]);
  assert.deepEqual(Array.from(bf.tensors.x.data), [
    0,
    1,
    -2.5,
    65536,
    1.0011717677116394e-7,
    3.140625,
    -0.10009765625,
    0.333984375,
    70144,
    Infinity,
    -Infinity,
  ]);
  // f16 arrays write as F16 and, with { f16: true }, read back as the same Float16Array.
  const h = {
    x: { shape: [values.length], dtype: "f16" as const, data: new Float16Array(values) },
  };
  const bytes = await serializeSafetensors(h);
  const widened = await parseSafetensors(bytes);
  assert.deepEqual(widened.dtypes, { x: "F16" });
  assert.equal(widened.tensors.x.dtype, "f32");
  assert.deepEqual(Array.from(widened.tensors.x.data), Array.from(half.tensors.x.data));
  const kept = await parseSafetensors(bytes, "<bytes>", { f16: true });
  assert.deepEqual(kept.tensors.x, h.x);
  const nan = await parseSafetensors(
    await serializeSafetensors({ x: f32([1], [NaN]) }, {}, { floatDType: "F16" }),
  );
  assert.ok(Number.isNaN(nan.tensors.x.data[0]));
});

Deno.test("safetensors: files written by other tools (unpadded header, no metadata) load", async () => {
  const data = new Uint8Array(12);
  new DataView(data.buffer).setFloat32(0, 1.5, true);
  new DataView(data.buffer).setInt32(4, -7, true);
  new DataView(data.buffer).setUint16(8, 0x3c00, true); // f16 1.0
  new DataView(data.buffer).setUint16(10, 0x4040, true); // bf16 3.0
  const bytes = fileBytes({
    x: { dtype: "F32", shape: [1], data_offsets: [0, 4] },
    n: { dtype: "I32", shape: [1], data_offsets: [4, 8] },
    h: { dtype: "F16", shape: [1], data_offsets: [8, 10] },
    b: { dtype: "BF16", shape: [1], data_offsets: [10, 12] },
  }, data);
  const t = (await parseSafetensors(bytes)).tensors;
  assert.deepEqual([t.x.data[0], t.n.data[0], t.h.data[0], t.b.data[0]], [1.5, -7, 1, 3]);
  assert.equal(t.n.dtype, "i32");
});

const corruptions: [string, () => Uint8Array | Promise<Uint8Array>, RegExp][] = [
  ["too short", () => new Uint8Array(5), /too short/],
  [
    "header past the end",
    async () => (await serializeSafetensors({ x: f32([1], [1]) })).subarray(0, 20),
    /runs past the end/,
  ],
  ["implausible header size", () => {
    const b = new Uint8Array(16);
    new DataView(b.buffer).setBigUint64(0, 2n ** 40n, true);
    return b;
  }, /implausible/],
  ["header not JSON", () => {
    const b = fileBytes({});
    b[8] = 0x5b; // "[" … unbalanced
    return b;
  }, /not valid UTF-8 JSON/],
  ["header not an object", () => fileBytes([1, 2]), /not a JSON object/],
  [
    "unsupported dtype",
    () => fileBytes({ x: { dtype: "F64", shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)),
    /F64.*not supported/,
  ],
  [
    "bad shape",
    () => fileBytes({ x: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4)),
    /shape/,
  ],
  [
    "bad offsets",
    () => fileBytes({ x: { dtype: "F32", shape: [1], data_offsets: [4, 0] } }, new Uint8Array(4)),
    /data_offsets/,
  ],
  [
    "size mismatch",
    () => fileBytes({ x: { dtype: "F32", shape: [2], data_offsets: [0, 4] } }, new Uint8Array(4)),
    /do not match F32\[2\]/,
  ],
  ["overlap", () =>
    fileBytes({
      x: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      y: { dtype: "F32", shape: [1], data_offsets: [4, 8] },
    }, new Uint8Array(8)), /overlap or hole/],
  [
    "hole",
    () => fileBytes({ x: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, new Uint8Array(8)),
    /overlap or hole/,
  ],
  ["truncated data", async () => {
    const b = await serializeSafetensors({ x: f32([3], [1, 2, 3]) });
    return b.subarray(0, b.length - 4);
  }, /cover 12 data bytes but the file holds 8/],
  ["trailing bytes", async () => {
    const b = await serializeSafetensors({ x: f32([1], [1]) });
    const out = new Uint8Array(b.length + 4);
    out.set(b);
    return out;
  }, /cover 4 data bytes but the file holds 8/],
  ["flipped data bit", async () => {
    const b = await serializeSafetensors({ x: f32([2], [1, 2]) });
    b[b.length - 1] ^= 1;
    return b;
  }, /checksum mismatch/],
  [
    "metadata not strings",
    () => fileBytes({ __metadata__: { a: 1 } }),
    /__metadata__\.a must be a string/,
  ],
];

for (const [name, make, pattern] of corruptions) {
  Deno.test(`safetensors: corrupt file (${name}) is rejected with a clear error`, async () => {
    await assert.rejects(parseSafetensors(await make(), "model.safetensors"), (e: Error) => {
      assert.match(e.message, /^safetensors \(model\.safetensors\): /);
      assert.match(e.message, pattern);
      return true;
    });
  });
}

Deno.test("safetensors: writes are atomic — replace whole files, leave no temp files", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "m.safetensors");
  await writeSafetensors(path, { x: f32([2], [1, 2]) });
  await writeSafetensors(path, { y: i32([1], [5]) }, { run: "2" });
  const back = await readSafetensorsFile(path);
  assert.deepEqual(Object.keys(back.tensors), ["y"]);
  assert.equal(back.metadata.run, "2");
  assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["m.safetensors"]);
  // A failed write (missing folder) leaves nothing behind and the error names the path.
  await assert.rejects(
    writeSafetensors(join(dir, "missing", "m.safetensors"), { x: f32([1], [1]) }),
    /missing\/m\.safetensors/,
  );
  assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["m.safetensors"]);
  await assert.rejects(
    readSafetensors(join(dir, "nope.safetensors")),
    /nope\.safetensors.*cannot read file/,
  );
  await Deno.remove(dir, { recursive: true });
});
