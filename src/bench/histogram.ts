// Latency histograms (HdrHistogram, through hdr-histogram-js): values are microseconds, 1 µs to one
// hour at 3 significant digits. Workers send interval histograms to the parent in HdrHistogram's
// compressed base64 form, which the parent merges without losing precision.

import * as hdr from 'hdr-histogram-js'

export type Histogram = hdr.Histogram

const MAX_US = 3_600_000_000

export function newHistogram(): Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: MAX_US, numberOfSignificantValueDigits: 3, autoResize: false })
}

export function recordUs(h: Histogram, us: number): void {
  h.recordValue(us < 1 ? 1 : us > MAX_US ? MAX_US : Math.round(us))
}

export function encodeHistogram(h: Histogram): string {
  return hdr.encodeIntoCompressedBase64(h)
}

export function addEncoded(into: Histogram, encoded: string): void {
  const h = hdr.decodeFromCompressedBase64(encoded)
  into.add(h)
  h.destroy()
}

/** The summary every table and chart uses; latencies in milliseconds. */
export interface LatencySummary {
  count: number
  mean: number
  p50: number
  p90: number
  p95: number
  p99: number
  max: number
}

export function summarize(h: Histogram): LatencySummary {
  if (h.totalCount === 0) return { count: 0, mean: 0, p50: 0, p90: 0, p95: 0, p99: 0, max: 0 }
  const ms = (us: number) => Math.round(us) / 1000
  return {
    count: h.totalCount,
    mean: Math.round(h.mean) / 1000,
    p50: ms(h.getValueAtPercentile(50)),
    p90: ms(h.getValueAtPercentile(90)),
    p95: ms(h.getValueAtPercentile(95)),
    p99: ms(h.getValueAtPercentile(99)),
    max: ms(h.maxValue),
  }
}
