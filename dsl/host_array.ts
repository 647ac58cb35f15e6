/**
 * Host-side arrays: the values that go into and come out of traced functions.
 *
 * A HostArray is plain data (shape, dtype, a typed array in row-major order), so a literal object
 * built by a user works as well as one made by `array()`. Float data may be a Float64Array: the
 * CPU reference's f64 mode reads and writes those for gradient checks.
 */

import { type DType, isDType, isFloat } from "./dtype.ts";
import { formatShape, isValidShape, type Shape, sizeOf } from "./shape.ts";

/**
 * The typed arrays a HostArray may hold: Int32Array for i32/bool, Float32Array for f32,
 * Float16Array for f16 (Float32Array accepted too: its values are rounded where they are used),
 * Float64Array for either in the CPU reference's f64 mode.
 */
export type HostData = Float32Array | Float16Array | Float64Array | Int32Array;

/** A host-side tensor value: a shape, a dtype and its elements in row-major order. */
export interface HostArray {
  /** Dimensions, outermost first; `[]` is a scalar. */
  shape: number[];
  /** Element type. */
  dtype: DType;
  /** The elements in row-major order; its length is the product of `shape`. */
  data: HostData;
}

/** Nested arrays of numbers or booleans, as accepted by `array()`. */
export type NestedNumbers = number | boolean | readonly NestedNumbers[];

/** True when `x` looks like a HostArray: an array shape, a known dtype and typed-array data. */
export function isHostArray(x: unknown): x is HostArray {
  if (typeof x !== "object" || x === null) return false;
  const h = x as Partial<HostArray>;
  return Array.isArray(h.shape) && isDType(h.dtype) && ArrayBuffer.isView(h.data);
}

export function allocData(dtype: DType, size: number, precision: "f32" | "f64" = "f32"): HostData {
  if (!isFloat(dtype)) return new Int32Array(size);
  if (precision === "f64") return new Float64Array(size);
  return dtype === "f16" ? newFloat16Array(size) : new Float32Array(size);
}

/** A Float16Array, or a clear error on a JavaScript engine without one (before ES2025). */
export function newFloat16Array(source: number | ArrayLike<number>): Float16Array {
  if (typeof Float16Array === "undefined") {
    throw new Error("f16: this JavaScript engine has no Float16Array (Deno ≥ 2.2, Chrome ≥ 135)");
  }
  return typeof source === "number" ? new Float16Array(source) : Float16Array.from(source);
}

/** Whether `data` is a Float16Array (false where the engine has none). */
export function isFloat16Data(data: unknown): data is Float16Array {
  return typeof Float16Array !== "undefined" && data instanceof Float16Array;
}

/** Whether `data` holds floats (Float16Array, Float32Array or Float64Array). */
export function isFloatData(data: unknown): boolean {
  return data instanceof Float32Array || data instanceof Float64Array || isFloat16Data(data);
}

/** The transpose of a 2-D host array (a copy, same dtype). */
export function transposed(x: HostArray): HostArray {
  const [rows, cols] = x.shape;
  const data = allocData(x.dtype, rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) data[j * rows + i] = x.data[i * cols + j];
  }
  return { shape: [cols, rows], dtype: x.dtype, data };
}

/** Checks that a HostArray is internally consistent; throws a message naming `where`. */
export function validateHostArray(x: HostArray, where: string): void {
  if (!isValidShape(x.shape)) {
    throw new Error(`${where}: invalid shape ${JSON.stringify(x.shape)}`);
  }
  if (x.data.length !== sizeOf(x.shape)) {
    throw new Error(
      `${where}: data has ${x.data.length} elements but shape ${formatShape(x.shape)} needs ${
        sizeOf(x.shape)
      }`,
    );
  }
  if (isFloat(x.dtype) !== isFloatData(x.data)) {
    throw new Error(`${where}: dtype ${x.dtype} does not match ${x.data.constructor.name} data`);
  }
}

function inferShape(data: NestedNumbers): number[] {
  const shape: number[] = [];
  let cur: NestedNumbers = data;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    if (cur.length === 0) break;
    cur = cur[0];
  }
  return shape;
}

function flattenNested(data: NestedNumbers, shape: Shape, depth: number, out: number[]): void {
  if (depth === shape.length) {
    if (Array.isArray(data)) throw new Error("array: ragged nested data");
    out.push(typeof data === "boolean" ? (data ? 1 : 0) : data as number);
    return;
  }
  if (!Array.isArray(data) || data.length !== shape[depth]) {
    throw new Error(`array: ragged nested data at depth ${depth}`);
  }
  for (const d of data) flattenNested(d, shape, depth + 1, out);
}

function firstLeaf(data: NestedNumbers): number | boolean | undefined {
  let cur: NestedNumbers = data;
  while (Array.isArray(cur)) {
    if (cur.length === 0) return undefined;
    cur = cur[0];
  }
  return cur as number | boolean;
}

/**
 * Makes a HostArray from a number, a flat array-like (with `shape`), or nested arrays.
 *
 * @example array([[1, 2], [3, 4]]) // f32[2,2]
 * @example array([0, 1, 2], { dtype: "i32" })
 */
export function array(
  data: NestedNumbers | ArrayLike<number>,
  opts: { shape?: number[]; dtype?: DType } = {},
): HostArray {
  let flat: ArrayLike<number>;
  let shape: number[];
  let inferred: DType = "f32";
  if (typeof data === "number" || typeof data === "boolean") {
    flat = [typeof data === "boolean" ? (data ? 1 : 0) : data];
    shape = [];
    if (typeof data === "boolean") inferred = "bool";
  } else if (ArrayBuffer.isView(data)) {
    flat = data as ArrayLike<number>;
    shape = [flat.length];
    if (data instanceof Int32Array) inferred = "i32";
    else if (isFloat16Data(data)) inferred = "f16";
  } else if (Array.isArray(data)) {
    shape = inferShape(data as NestedNumbers);
    const out: number[] = [];
    flattenNested(data as NestedNumbers, shape, 0, out);
    flat = out;
    if (typeof firstLeaf(data as NestedNumbers) === "boolean") inferred = "bool";
  } else {
    flat = Array.from(data as ArrayLike<number>);
    shape = [flat.length];
  }
  const dtype = opts.dtype ?? inferred;
  if (!isDType(dtype)) throw new Error(`array: unknown dtype ${JSON.stringify(dtype)}`);
  if (opts.shape !== undefined) {
    if (!isValidShape(opts.shape)) {
      throw new Error(`array: invalid shape ${JSON.stringify(opts.shape)}`);
    }
    if (sizeOf(opts.shape) !== flat.length) {
      throw new Error(
        `array: ${flat.length} values cannot have shape ${formatShape(opts.shape)}`,
      );
    }
    shape = [...opts.shape];
  }
  const out = allocData(dtype, flat.length);
  for (let i = 0; i < flat.length; i++) {
    const v = Number(flat[i]);
    out[i] = dtype === "bool" ? (v ? 1 : 0) : v;
  }
  return { shape, dtype, data: out };
}

/** The values of a HostArray as nested JavaScript arrays (booleans for bool). */
export function toNested(x: HostArray): NestedNumbers {
  const read = (i: number) => x.dtype === "bool" ? x.data[i] !== 0 : x.data[i];
  if (x.shape.length === 0) return read(0);
  let offset = 0;
  const build = (depth: number): NestedNumbers[] => {
    const n = x.shape[depth];
    const out: NestedNumbers[] = [];
    for (let i = 0; i < n; i++) {
      out.push(depth === x.shape.length - 1 ? read(offset++) : build(depth + 1));
    }
    return out;
  };
  return build(0);
}

/** A readable one-line-per-row rendering, as numpy prints arrays. */
export function formatHostArray(x: HostArray): string {
  return `${x.dtype}${formatShape(x.shape)} ${JSON.stringify(toNested(x))}`;
}
