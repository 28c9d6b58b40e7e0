// The browser client's parser and id order, in Node: they are pure, and eventsource-parser (which
// the other stream tests use) is the reference to agree with.
import { createParser as referenceParser } from 'eventsource-parser'
import fc from 'fast-check'
import t from 'tap'
import { isAfter } from '../../src/browser/event-id.js'
import { createParser, type ParsedMessage } from '../../src/browser/parser.js'

interface Parsed {
  messages: ParsedMessage[]
  retries: number[]
}

function parse(chunks: string[]): Parsed {
  const out: Parsed = { messages: [], retries: [] }
  const parser = createParser(
    (m) => out.messages.push(m),
    (ms) => out.retries.push(ms),
  )
  for (const chunk of chunks) parser.feed(chunk)
  return out
}

function reference(text: string): Parsed {
  const out: Parsed = { messages: [], retries: [] }
  const parser = referenceParser({
    onEvent: (e) => out.messages.push({ event: e.event ?? 'message', data: e.data, id: e.id }),
    onRetry: (ms) => out.retries.push(ms),
  })
  parser.feed(text)
  return out
}

t.test('fields, line ends and the details of the grammar', async (t) => {
  t.same(parse(['event: a\ndata: 1\nid: 5-0\n\n']).messages, [{ event: 'a', data: '1', id: '5-0' }])
  t.same(
    parse(['data: x\r\ndata: y\rdata: z\n\r\n']).messages,
    [{ event: 'message', data: 'x\ny\nz', id: undefined }],
    'CRLF, CR and LF all end lines; data lines join with LF',
  )
  t.same(parse(['\uFEFFdata: bom\n\n']).messages[0]?.data, 'bom', 'one BOM at the start is dropped')
  t.same(parse(['data: \uFEFFkept\n\n']).messages[0]?.data, '\uFEFFkept', 'a BOM elsewhere is data')
  t.same(parse([': a comment\ndata: c\n\n']).messages[0]?.data, 'c', 'comments are ignored')
  t.same(parse(['data:  two spaces\n\n']).messages[0]?.data, ' two spaces', 'only one space is dropped')
  t.same(parse(['data\n\n']).messages, [{ event: 'message', data: '', id: undefined }], 'a bare field name')
  t.same(parse(['event: only\nid: 1-0\n\n']).messages, [], 'no data: nothing dispatched')
  t.same(parse(['data: a\nid: 1\0\n\n']).messages[0]?.id, undefined, 'an id with NUL is ignored')
  t.same(parse(['data: a\n\ndata: b\n\n']).messages[1]?.id, undefined, 'the id belongs to its own event')
  t.same(parse(['retry: 1500\nretry: 1e3\nretry: -1\nretry: 12a\nretry:\n']).retries, [1500], 'digits only')
  t.same(parse(['data: unfinished']).messages, [], 'an unfinished event is never dispatched')
  t.same(parse(['data: a\r', '\ndata: b\n\n']).messages[0]?.data, 'a\nb', 'CRLF split between chunks')
  t.same(parse(['data: a\r', '', '\n\n']).messages[0]?.data, 'a', 'an empty chunk does not split the CRLF')
  t.same(parse(['data: a\r', '\r']).messages[0]?.data, 'a', 'CR CR: a line, then a blank line')
})

const piece = fc.oneof(
  fc.constantFrom('data', 'event', 'id', 'retry', 'dat', ':', ': ', ' ', '\0', '\uFEFF', 'x', '1', 'é', '😀'),
  fc.constantFrom('\n', '\r', '\r\n', '\n\n', '\r\r', '\r\n\r\n'),
  fc.string({ maxLength: 4 }),
)

t.test('agrees with eventsource-parser on any stream, cut into any chunks', async (t) => {
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 40 }), fc.array(fc.nat(), { maxLength: 8 }), (pieces, cuts) => {
      const text = pieces.join('')
      const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b)
      const chunks: string[] = []
      let last = 0
      for (const p of points) {
        chunks.push(text.slice(last, p))
        last = p
      }
      chunks.push(text.slice(last))
      // fast-check reports the smallest stream and cuts on which they differ.
      return JSON.stringify(parse(chunks)) === JSON.stringify(reference(text))
    }),
    { numRuns: 1000 },
  )
  t.pass('1000 random streams parsed the same')
})

t.test('ids compare by milliseconds, then sequence, digit by digit', async (t) => {
  t.ok(isAfter('1-0', undefined))
  t.ok(isAfter('2-0', '1-5'))
  t.ok(isAfter('1-10', '1-9'), 'numerically, not as text')
  t.ok(isAfter('10-0', '9-99'))
  t.notOk(isAfter('1-9', '1-10'))
  t.notOk(isAfter('5-5', '5-5'), 'the same id is not after itself')
  t.ok(isAfter('99999999999999999-1', '99999999999999999-0'), 'beyond 2^53')
  t.ok(isAfter('other', 'another'), 'ids of another shape are only told apart')
  t.notOk(isAfter('same', 'same'))
})
