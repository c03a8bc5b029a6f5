// custom: a workload read from a user's file (the format is in custom-format.ts). Params become
// options of init and run; each cycle runs one op, chosen by weight; an op of several statements
// runs as one transaction.

import fs from 'node:fs'
import { usageError } from '../errors.ts'
import { WeightedChoice, type Rng } from '../rng.ts'
import { inTransaction, type CycleContext, type Params, type Workload } from '../workload.ts'
import { parseWorkloadFile, WorkloadFileError, type Arg, type Expr, type Template, type WorkloadFile } from './custom-format.ts'

const ALNUM = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'

export function loadCustomWorkload(file: string): Workload {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    throw usageError(`cannot read the workload file ${file}: ${(err as Error).message}`)
  }
  try {
    return customWorkload(parseWorkloadFile(text, file))
  } catch (err) {
    if (err instanceof WorkloadFileError) throw usageError(err.message)
    throw err
  }
}

export function customWorkload(wf: WorkloadFile): Workload {
  return {
    name: 'custom',
    description: `operations from ${wf.file}`,
    ops: wf.ops.map((o) => o.name),
    params: [
      ...wf.params.map((p) => ({ name: p.name, default: p.value, doc: `from ${wf.file}:${p.line}` })),
      ...wf.ops.map((o) => ({ name: `weight-${o.name}`, default: o.weight, doc: `weight of op ${o.name} (${wf.file}:${o.line})`, min: 0 })),
    ],
    async init(client, params) {
      for (const tpl of wf.init) {
        try {
          await client.query(fill(tpl, params, []))
        } catch (err) {
          throw Object.assign(new Error(`${wf.file}:${tpl.line}: ${(err as Error).message}`), { code: (err as { code?: string }).code })
        }
      }
    },
    async probe(_client, params) {
      return params
    },
    cycle(ctx: CycleContext) {
      const ops = wf.ops.map((op, i) => {
        const stmts = op.statements.map((tpl, k) => {
          const gens: Array<(rng: Rng) => unknown> = []
          const config = ctx.query(`${op.name}_${k}`, fill(tpl, ctx.params, gens), new Array<unknown>(gens.length).fill(null))
          return { config, gens }
        })
        const draw = () => {
          for (const s of stmts) for (let g = 0; g < s.gens.length; g++) s.config.values![g] = s.gens[g](ctx.rng)
        }
        const runAll = async () => {
          for (const s of stmts) await ctx.client.query(s.config)
        }
        const run = stmts.length === 1 ? () => ctx.client.query(stmts[0].config) : () => inTransaction(ctx, runAll)
        return { i, draw, run }
      })
      const choice = new WeightedChoice(wf.ops.map((o) => ctx.params[`weight-${o.name}`]))
      return async () => {
        const op = ops[choice.pick(ctx.rng)]
        op.draw()
        await ctx.op.run(op.i, op.run)
      }
    },
  }
}

/** The statement's text with params written in and generators as $1, $2, ... (pushed onto gens). */
function fill(tpl: Template, params: Params, gens: Array<(rng: Rng) => unknown>): string {
  let text = tpl.pieces[0]
  tpl.exprs.forEach((e, k) => {
    text += e.kind === 'param' ? String(params[e.name]) : `$${gens.push(generator(e, params))}`
    text += tpl.pieces[k + 1]
  })
  return text
}

function generator(e: Extract<Expr, { kind: 'call' }>, params: Params): (rng: Rng) => unknown {
  const value = (a: Arg): number | string => (a.kind === 'param' ? params[a.name] : a.value)
  const num = (a: Arg): number => Number(value(a))
  switch (e.fn) {
    case 'int': {
      const lo = Math.ceil(num(e.args[0]))
      const hi = Math.floor(num(e.args[1]))
      return (rng) => rng.int(lo, hi)
    }
    case 'float': {
      const lo = num(e.args[0])
      const span = num(e.args[1]) - lo
      return (rng) => lo + rng.float() * span
    }
    case 'text': {
      const len = Math.max(0, Math.floor(num(e.args[0])))
      return (rng) => {
        let s = ''
        for (let i = 0; i < len; i++) s += ALNUM[rng.next() % ALNUM.length]
        return s
      }
    }
    case 'pick': {
      const choices = e.args.map(value)
      return (rng) => rng.pick(choices)
    }
  }
}
