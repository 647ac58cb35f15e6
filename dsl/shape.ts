/** Shape arithmetic shared by the shape rules, the reference evaluator and the compiler. */

export type Shape = readonly number[];

export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major strides in elements. */
export function stridesOf(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

export function shapesEqual(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function formatShape(shape: Shape): string {
  return `[${shape.join(",")}]`;
}

/**
 * Normalises a possibly negative axis against `rank`; returns -1 when out of range so that callers
 * raise an error naming their own op.
 */
export function normalizeAxis(axis: number, rank: number): number {
  if (!Number.isInteger(axis)) return -1;
  const a = axis < 0 ? axis + rank : axis;
  return a >= 0 && a < rank ? a : -1;
}

/** numpy broadcasting of several shapes; returns undefined when they are incompatible. */
export function broadcastShapes(...shapes: Shape[]): number[] | undefined {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const o = rank - s.length + i;
      const d = s[i];
      if (out[o] === 1) out[o] = d;
      else if (d !== 1 && d !== out[o]) return undefined;
    }
  }
  return out;
}

export function isValidShape(shape: unknown): shape is number[] {
  return Array.isArray(shape) && shape.every((d) => Number.isInteger(d) && d >= 0);
}
