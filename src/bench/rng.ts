// A seeded random number generator, so that every target of one run sees the same sequence of
// operations and parameters: one stream per (seed, worker, connection). sfc32, seeded through
// splitmix32 (both public-domain algorithms), is fast and good enough for picking rows.

export class Rng {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor(seed: number, ...stream: number[]) {
    let s = seed >>> 0
    for (const x of stream) s = mix32((s ^ Math.imul(x + 1, 0x9e3779b9)) >>> 0)
    this.a = mix32(s + 1)
    this.b = mix32(s + 2)
    this.c = mix32(s + 3)
    this.d = 1
    for (let i = 0; i < 12; i++) this.next()
  }

  /** A uint32. */
  next(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0
    this.d = (this.d + 1) >>> 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) >>> 0
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0
    this.c = (this.c + t) >>> 0
    return t
  }

  /** [0, 1) */
  float(): number {
    return this.next() / 4294967296
  }

  /** An integer in [lo, hi], both included. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1))
  }

  /** True with probability pct/100. */
  chance(pct: number): boolean {
    return this.float() * 100 < pct
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.float() * items.length)]
  }
}

function mix32(x: number): number {
  let z = (x + 0x9e3779b9) >>> 0
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
  return (z ^ (z >>> 16)) >>> 0
}

/** Picks an index by weight; built once, so a pick is one random number and a short scan. */
export class WeightedChoice {
  private readonly cumulative: number[]
  private readonly total: number

  constructor(weights: readonly number[]) {
    let sum = 0
    this.cumulative = weights.map((w) => (sum += w))
    this.total = sum
  }

  pick(rng: Rng): number {
    const x = rng.float() * this.total
    const c = this.cumulative
    for (let i = 0; i < c.length; i++) if (x < c[i]) return i
    return c.length - 1
  }
}
