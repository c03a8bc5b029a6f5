// SASLprep (RFC 4013) as PostgreSQL applies it to SCRAM passwords: RFC 4013's own examples, the
// cases where PostgreSQL falls back to the raw bytes, and SCRAM keys that agree for a password
// written in different Unicode normalisation forms.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { saslprep, scramPasswordBytes } from '../../src/auth/saslprep.ts'
import { scramVerifier } from '../../src/auth/server-login.ts'
import { clientKeyIfPasswordMatches, parseScramVerifier } from '../../src/auth/scram-server.ts'

// RFC 4013 section 3, examples 1-7.
test('saslprep: RFC 4013 examples', () => {
  assert.deepEqual(saslprep('I\u00ADX'), { ok: true, value: 'IX' }, 'SOFT HYPHEN mapped to nothing')
  assert.deepEqual(saslprep('user'), { ok: true, value: 'user' }, 'no transformation')
  assert.deepEqual(saslprep('USER'), { ok: true, value: 'USER' }, 'case preserved')
  assert.deepEqual(saslprep('\u00AA'), { ok: true, value: 'a' }, 'output is NFKC')
  assert.deepEqual(saslprep('\u2168'), { ok: true, value: 'IX' }, 'output is NFKC')
  assert.equal(saslprep('\u0627\u0031').ok, false, 'bidi check')
  // Example 6 ("\u0007", prohibited) is ASCII: PostgreSQL takes every ASCII string as it is, and
  // its bytes are what SCRAM hashes whether SASLprep accepts it or not.
  assert.deepEqual(scramPasswordBytes('\u0007'), Buffer.from([7]))
  assert.deepEqual(saslprep('\u0007\u00e9'), { ok: false, reason: 'prohibited' }, 'a control character beside non-ASCII text')
})

test('saslprep: mapping, normalisation and the checks', () => {
  assert.deepEqual(saslprep('pass\u00A0wo\u0308rd'), { ok: true, value: 'pass w\u00F6rd' }, 'non-ASCII space to space, NFKC composes')
  assert.deepEqual(saslprep('a\u3000b\u2003c'), { ok: true, value: 'a b c' })
  assert.deepEqual(saslprep('a\u200Bb'), { ok: true, value: 'a b' }, 'U+200B is a space (C.1.2) before B.1 could drop it, as in PostgreSQL')
  assert.deepEqual(saslprep('x\uFE0F\u200Dy\u00E9'), { ok: true, value: 'xy\u00E9' }, 'variation selector and ZWJ mapped to nothing')
  assert.deepEqual(saslprep('\uFB01\u00E9'), { ok: true, value: 'fi\u00E9' }, 'compatibility ligature')
  assert.deepEqual(saslprep('\u00AD\u200C'), { ok: false, reason: 'empty' })
  assert.deepEqual(saslprep('\u00E9\uE000'), { ok: false, reason: 'prohibited' }, 'private use (C.3)')
  assert.deepEqual(saslprep('\u00E9\u0085'), { ok: false, reason: 'prohibited' }, 'non-ASCII control (C.2.2)')
  assert.deepEqual(saslprep('\u00E9\u206A'), { ok: false, reason: 'prohibited' }, 'deprecated format character (C.8)')
  assert.deepEqual(saslprep('\u00E9\u{E0041}'), { ok: false, reason: 'prohibited' }, 'tag character (C.9)')
  assert.deepEqual(saslprep('\u00E9\u{1F600}'), { ok: false, reason: 'unassigned' }, 'unassigned in Unicode 3.2 (A.1)')
  assert.deepEqual(saslprep('\u0627\u0628'), { ok: true, value: '\u0627\u0628' }, 'right-to-left only')
  assert.deepEqual(saslprep('\u0627a\u0628'), { ok: false, reason: 'bidi' }, 'RandALCat mixed with LCat')
  assert.deepEqual(saslprep('\u0627 1\u0628'), { ok: true, value: '\u0627 1\u0628' }, 'neutral characters inside right-to-left text')
  assert.deepEqual(saslprep('a\uD800'), { ok: false, reason: 'invalid-utf8' })
  assert.deepEqual(saslprep(Buffer.from([0x61, 0xff])), { ok: false, reason: 'invalid-utf8' })
  assert.deepEqual(saslprep(Buffer.from('\u00C5', 'utf8')), { ok: true, value: '\u00C5' })
})

test('scramPasswordBytes: the prepared password, or the raw bytes when SASLprep refuses', () => {
  assert.deepEqual(scramPasswordBytes('I\u00ADX'), Buffer.from('IX'))
  assert.deepEqual(scramPasswordBytes('e\u0301\u{1F600}'), Buffer.from('e\u0301\u{1F600}', 'utf8'), 'no normalisation when a character is refused')
  const raw = Buffer.from([0x61, 0xff])
  assert.equal(scramPasswordBytes(raw), raw)
})

test('SCRAM keys: a password in NFC and NFD with a non-ASCII space prove the same verifier', async () => {
  const nfc = 'p\u00E4ss\u00A0w\u00F6rd'
  const nfd = 'pa\u0308ss\u2007wo\u0308rd'
  const verifier = parseScramVerifier(scramVerifier(nfc, Buffer.alloc(16, 7), 4096))
  assert.ok(verifier !== null)
  assert.ok((await clientKeyIfPasswordMatches(nfd, verifier)) !== null, 'the decomposed form logs in')
  assert.ok((await clientKeyIfPasswordMatches('p\u00E4ss w\u00F6rd', verifier)) !== null, 'so does the form with a plain space')
  assert.equal(await clientKeyIfPasswordMatches('p\u00E4ssw\u00F6rd', verifier), null, 'without the space it is another password')
})
