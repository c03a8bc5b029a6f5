// The lexical rules pg_hba.conf and pg_ident.conf share (PostgreSQL's tokenize_auth_file): comments,
// blank-separated fields, comma lists, double quotes and backslash continuation. hba.ts and ident.ts
// each give the fields their own meaning.
// Must not: read files, throw, or log.

/** One word of a field; `quoted` when any part of it was in double quotes (keywords then lose meaning). */
export interface Token { readonly text: string; readonly quoted: boolean; readonly file: string; readonly line: number }
/** A field is one token or a comma-separated list of them. */
export type Field = Token[]

/**
 * Splits text into logical lines of fields, pg_hba.conf style: # starts a comment outside quotes,
 * spaces and tabs separate fields, commas join tokens into one field's list, double quotes make
 * blanks, commas and # literal and strip keywords of their meaning, and a line ending in a
 * backslash continues on the next (PostgreSQL 15+). Yields an error string for a bad line.
 */
export function* tokenize(text: string, file: string): Generator<{ line: number; fields: Field[] } | string> {
  const physical = text.replace(/^\uFEFF/, '').split(/\r?\n/)
  for (let i = 0; i < physical.length; i++) {
    const line = i + 1
    let s = physical[i]
    while (s.endsWith('\\') && i + 1 < physical.length) s = s.slice(0, -1) + physical[++i]
    const r = tokenizeLine(s, file, line)
    if (typeof r === 'string') yield r
    else if (r.length > 0) yield { line, fields: r }
  }
}

function tokenizeLine(s: string, file: string, line: number): Field[] | string {
  const fields: Field[] = []
  const n = s.length
  const isBlank = (c: string): boolean => c === ' ' || c === '\t'
  let i = 0
  for (;;) {
    while (i < n && isBlank(s[i])) i++
    if (i >= n || s[i] === '#') return fields
    const field: Field = []
    for (;;) {
      let text = ''
      let quoted = false
      let inQuote = false
      for (; i < n; i++) {
        const c = s[i]
        if (inQuote) {
          if (c === '"') inQuote = false
          else text += c
        } else if (c === '"') {
          inQuote = quoted = true
        } else if (isBlank(c) || c === ',' || c === '#') {
          break
        } else {
          text += c
        }
      }
      if (inQuote) return `${file}:${line}: unterminated double quote`
      if (!quoted && text === '') return `${file}:${line}: empty element in a comma-separated list`
      field.push({ text, quoted, file, line })
      if (s[i] !== ',') break
      i++
      while (i < n && isBlank(s[i])) i++
      if (i >= n || s[i] === '#') return `${file}:${line}: a comma-separated list ends with a comma`
    }
    fields.push(field)
  }
}
