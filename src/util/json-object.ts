// Reading a JSON object someone else wrote (a value in etcd): the object, or why it is not one.
// Must not: throw on bad input.

export function parseJsonObject(value: string): { ok: true; o: Record<string, unknown> } | { ok: false; reason: string } {
  let v: unknown
  try {
    v = JSON.parse(value)
  } catch {
    return { ok: false, reason: 'value is not JSON' }
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { ok: false, reason: 'value is not a JSON object' }
  return { ok: true, o: v as Record<string, unknown> }
}
