import fc from 'fast-check'
import t from 'tap'
import { jsonText, jsonTextByLoop } from '../src/json-text.js'

t.test('the loop writes the text of JSON.stringify for any parsed JSON', async (t) => {
  fc.assert(
    fc.property(fc.jsonValue(), (value) => jsonTextByLoop(value) === JSON.stringify(value)),
    { numRuns: 500 },
  )
  t.pass('500 values')
})

t.test('a value nested deeper than JSON.stringify can go', async (t) => {
  const levels = 200_000
  const source = `{"a":${'['.repeat(levels)}1,{"b":"\\u00e9"}${']'.repeat(levels)},"z":null}`
  const value = JSON.parse(source) as unknown
  t.throws(() => JSON.stringify(value), RangeError, 'JSON.stringify cannot')
  t.equal(jsonText(value), source.replace('\\u00e9', 'é'))
})
