// Compares two result files of the http-cache-tests suite (meshgate, nginx):
// counts by kind and lists meshgate's failing required tests.
//
//   node scripts/cache-conformance-report.mjs SUITE_DIR meshgate.json nginx.json
import fs from 'fs'
import path from 'path'
import { pathToFileURL } from 'url'

const [suiteDir, ...files] = process.argv.slice(2)
const { default: tests } = await import(pathToFileURL(path.join(suiteDir, 'tests/index.mjs')))
const { default: surrogate } = await import(pathToFileURL(path.join(suiteDir, 'tests/surrogate-control.mjs')))
tests.push(surrogate)

const byId = new Map()
for (const suite of tests) for (const test of suite.tests) byId.set(test.id, test)

function verdict (id, results, seen = new Set()) {
  const test = byId.get(id)
  const result = results[id]
  if (result === undefined) return 'untested'
  for (const dep of test.depends_on || []) {
    if (seen.has(dep)) continue
    seen.add(dep)
    if (!['pass', 'yes'].includes(verdict(dep, results, seen))) return 'dependency_fail'
  }
  if (Array.isArray(result) && result[0] === 'Setup') return 'setup_fail'
  const kind = test.kind || 'required'
  if (kind === 'check') return result === true ? 'yes' : 'no'
  if (result === true) return 'pass'
  return kind === 'optimal' ? 'optional_fail' : 'fail'
}

const names = ['meshgate', 'nginx']
const tallies = files.map((file, i) => {
  const results = JSON.parse(fs.readFileSync(file, 'utf8'))
  const tally = { name: names[i] || file, results, required: {}, optimal: {}, check: {} }
  for (const [id, test] of byId) {
    const kind = test.kind || 'required'
    const v = verdict(id, results)
    tally[kind][v] = (tally[kind][v] || 0) + 1
  }
  return tally
})

const fmt = (o) => Object.entries(o).sort().map(([k, v]) => `${k} ${v}`).join(', ')
for (const t of tallies) {
  console.log(`${t.name.padEnd(9)} required: ${fmt(t.required)}`)
  console.log(`${''.padEnd(9)} optimal:  ${fmt(t.optimal)}`)
  console.log(`${''.padEnd(9)} check:    ${fmt(t.check)}`)
}
const [ours, theirs] = tallies
console.log(`\nrequired tests passed: ${ours.name} ${ours.required.pass || 0}, ${theirs ? `${theirs.name} ${theirs.required.pass || 0}` : ''}`)
console.log(`\n${ours.name}: required tests not passed`)
for (const [id, test] of byId) {
  if ((test.kind || 'required') !== 'required') continue
  const v = verdict(id, ours.results)
  if (v === 'pass') continue
  const r = ours.results[id]
  const detail = Array.isArray(r) ? r[1] : ''
  const other = theirs ? ` [${theirs.name}: ${verdict(id, theirs.results)}]` : ''
  console.log(`  ${v.padEnd(15)} ${id}${other}: ${test.name}${detail ? ` — ${detail}` : ''}`)
}
