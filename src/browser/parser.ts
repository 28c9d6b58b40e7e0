/**
 * A streaming text/event-stream parser (WHATWG HTML, "Server-sent events", interpreting an event
 * stream), fed decoded text in chunks cut anywhere. Pure: no DOM, no Node, so Node tests can run it.
 */

export interface ParsedMessage {
  /** `event:`, or `message` when the event had none. */
  event: string
  /** The `data:` lines joined with LF. */
  data: string
  /**
   * The event's own `id:` field, when it had one. The spec's last event id also carries over to
   * later events without one; the client keeps that itself, and needs to know which events had an id.
   */
  id: string | undefined
}

export interface SseParser {
  feed(chunk: string): void
}

const LINE_END = /\r\n?|\n/g
const DIGITS = /^\d+$/

export function createParser(
  onMessage: (message: ParsedMessage) => void,
  onRetry: (ms: number) => void,
): SseParser {
  let buffer = ''
  let first = true
  // A chunk that ended in CR: a LF starting the next chunk is the second half of that CRLF.
  let afterCr = false
  let data = ''
  let event = ''
  let id: string | undefined

  function line(text: string): void {
    if (text === '') {
      // A block without data dispatches nothing, but still ends the block.
      if (data !== '') onMessage({ event: event || 'message', data: data.slice(0, -1), id })
      data = ''
      event = ''
      id = undefined
      return
    }
    const colon = text.indexOf(':')
    if (colon === 0) return // a comment
    const field = colon < 0 ? text : text.slice(0, colon)
    let value = colon < 0 ? '' : text.slice(colon + 1)
    if (value[0] === ' ') value = value.slice(1)
    if (field === 'data') data += `${value}\n`
    else if (field === 'event') event = value
    else if (field === 'id') {
      if (!value.includes('\0')) id = value
    } else if (field === 'retry') {
      if (DIGITS.test(value)) onRetry(Number(value))
    }
  }

  return {
    feed(chunk) {
      if (chunk === '') return
      if (afterCr && chunk[0] === '\n') chunk = chunk.slice(1)
      if (first) {
        first = false
        if (chunk[0] === '\uFEFF') chunk = chunk.slice(1)
      }
      // What is left of the buffer holds no line end: only the new text needs searching.
      LINE_END.lastIndex = buffer.length
      buffer += chunk
      afterCr = buffer[buffer.length - 1] === '\r'
      let start = 0
      for (let match = LINE_END.exec(buffer); match !== null; match = LINE_END.exec(buffer)) {
        line(buffer.slice(start, match.index))
        start = LINE_END.lastIndex
      }
      buffer = buffer.slice(start)
    },
  }
}
