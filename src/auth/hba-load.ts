// auth_hba_file and auth_ident_file read and checked together for auth_type hba, at start and on
// every RELOAD. Besides each file's own syntax, it refuses a rule whose options the running
// settings cannot honour, since a parsed option that is not enforced would be a silent weakening:
// map= needs auth_ident_file and a map of that name in it; clientcert= and cert lines need client
// certificates, which are only requested when client_tls_ca_file is set.
// Must not: log; a problem is a TidepoolError('TP_CONFIG_INVALID') naming file:line.

import fs from 'node:fs'
import { dirname, isAbsolute, resolve } from 'node:path'
import type { Config } from '../config/types.ts'
import { TidepoolError } from '../util/errors.ts'
import { parseHba, type HbaFile } from './hba.ts'
import { parseIdent, type IdentFile } from './ident.ts'

/** null unless auth_type is hba. */
export function loadHba(config: Config): HbaFile | null {
  const s = config.settings
  if (s.auth_type !== 'hba') return null
  if (s.auth_hba_file === '') throw new TidepoolError('TP_CONFIG_INVALID', 'auth_type hba needs auth_hba_file')
  const hbaPath = fullPath(config, s.auth_hba_file)
  const r = parseHba(readSetting('auth_hba_file', hbaPath), hbaPath, (p) => {
    try {
      return fs.readFileSync(p, 'utf8')
    } catch {
      return null
    }
  })
  if (!r.ok) throw new TidepoolError('TP_CONFIG_INVALID', r.errors.join('\n'))

  let ident: IdentFile | undefined
  if (s.auth_ident_file !== '') {
    const identPath = fullPath(config, s.auth_ident_file)
    const i = parseIdent(readSetting('auth_ident_file', identPath), identPath)
    if (!i.ok) throw new TidepoolError('TP_CONFIG_INVALID', i.errors.join('\n'))
    ident = i.ident
  }

  const errors: string[] = []
  const tlsOn = s.client_tls_sslmode !== 'disable'
  for (const rule of r.hba.rules) {
    const where = `${rule.file}:${rule.line}`
    const map = rule.options.map
    if (map !== undefined) {
      if (ident === undefined) errors.push(`${where}: map=${map} needs auth_ident_file`)
      else if (!ident.maps.has(map)) errors.push(`${where}: map "${map}" is not defined in auth_ident_file ${fullPath(config, s.auth_ident_file)}`)
    }
    // With TLS off a hostssl line never matches, so it needs no certificates to be safe.
    const needsCert = rule.method === 'cert' || rule.options.clientcert !== undefined
    if (needsCert && tlsOn && s.client_tls_ca_file === '') {
      errors.push(`${where}: ${rule.method === 'cert' ? 'cert authentication' : `clientcert=${rule.options.clientcert}`} needs client_tls_ca_file to verify client certificates`)
    }
  }
  if (errors.length > 0) throw new TidepoolError('TP_CONFIG_INVALID', errors.join('\n'))
  return Object.freeze({ ...r.hba, ident })
}

function fullPath(config: Config, path: string): string {
  return isAbsolute(path) ? path : resolve(dirname(config.file), path)
}

function readSetting(name: string, path: string): string {
  try {
    return fs.readFileSync(path, 'utf8')
  } catch (err) {
    throw new TidepoolError('TP_CONFIG_INVALID', `${name}: cannot read ${path}: ${(err as Error).message}`)
  }
}
