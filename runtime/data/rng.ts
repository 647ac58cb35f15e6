/**
 * A small seeded generator for host-side data work (shuffling, synthetic tasks): SplitMix32-style
 * mixing of a 32-bit counter, so a stream depends only on its seed and is cheap to fork.
 */
export class Rng {
  private state: number;

  /** A generator for `seed`; distinct `stream` values give independent sequences. */
  constructor(seed: number, stream = 0) {
    this.state = mix32((seed | 0) ^ mix32(stream + 0x9e3779b9));
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    this.state = (this.state + 0x9e3779b9) | 0;
    return mix32(this.state) >>> 0;
  }

  /** Uniform float in [0, 1). */
  next(): number {
    return this.nextU32() / 4294967296;
  }

  /** Uniform integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  /** A uniformly chosen element of `xs`. */
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)];
  }

  /** Fisher–Yates shuffle, in place. */
  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [xs[i], xs[j]] = [xs[j], xs[i]];
    }
    return xs;
  }
}

function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return x ^ (x >>> 16);
}

/** The order of `n` items for `epoch` under `seed` (a fresh permutation each epoch). */
export function permutation(n: number, seed: number, epoch = 0): number[] {
  return new Rng(seed, epoch + 1).shuffle(Array.from({ length: n }, (_, i) => i));
}
