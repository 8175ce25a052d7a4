/**
 * The repo's one event-stream parser (src/client/stream.ts), which the client, the test
 * helper and the benchmarks share: framing as the WHATWG spec has it, whatever the chunking.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SseParser, toStreamEvent, type SseEvent } from '../../src/client/stream.js';

/** Parses `text` fed in chunks of `size` characters. */
function parse(text: string, size = text.length): { events: SseEvent[]; comments: string[] } {
  const events: SseEvent[] = [];
  const comments: string[] = [];
  const parser = new SseParser((e) => events.push(e), (c) => comments.push(c));
  for (let i = 0; i < text.length; i += size) parser.push(text.slice(i, i + size));
  return { events, comments };
}

const STREAM = 'retry: 2000\r\n\r\n: keep-alive\r\n\r\nevent: message\r\nid: 7\r\ndata: {"id":"7"}\r\n\r\n'
  + 'event: read\ndata: {"ids":["7"],\ndata: "readAt":"x"}\n\n'
  + 'data: plain\rdata:no-space\r\r';

describe('SseParser', () => {
  it('frames events, ids, comments and multi-line data with \\n, \\r\\n and \\r line ends', () => {
    const { events, comments } = parse(STREAM);
    assert.deepEqual(comments, ['keep-alive']);
    assert.deepEqual(events, [
      { event: 'message', id: '7', data: '{"id":"7"}' },
      { event: 'read', id: undefined, data: '{"ids":["7"],\n"readAt":"x"}' },
      { event: 'message', id: undefined, data: 'plain\nno-space' },
    ]);
  });

  it('gives the same events however the text is cut, even between \\r and \\n', () => {
    const whole = parse(STREAM);
    for (const size of [1, 2, 3, 5, 7, 13]) assert.deepEqual(parse(STREAM, size), whole, `chunks of ${size}`);
  });

  it('holds an unfinished event until its blank line arrives', () => {
    const events: SseEvent[] = [];
    const parser = new SseParser((e) => events.push(e));
    parser.push('event: end\ndata: {"reason":"gone"}\n');
    assert.equal(events.length, 0);
    parser.push('\n');
    assert.deepEqual(events.map(toStreamEvent), [{ type: 'end', reason: 'gone' }]);
  });

  it('maps Postbox events and skips ones it does not know or cannot read', () => {
    assert.deepEqual(toStreamEvent({ event: 'receipt', id: undefined, data: '{"ids":["3"],"readAt":"t","by":"Bo"}' }),
      { type: 'receipt', ids: ['3'], readAt: 't', by: 'Bo' });
    const m = { id: '4', fromUser: 'me', toUser: 'Bo', message: 'hi', sentAt: 't', readAt: null };
    assert.deepEqual(toStreamEvent({ event: 'sent', id: '4', data: JSON.stringify(m) }), { type: 'sent', message: m });
    assert.equal(toStreamEvent({ event: 'future-thing', id: undefined, data: '{}' }), undefined);
    assert.equal(toStreamEvent({ event: 'message', id: '1', data: 'not json' }), undefined);
  });
});
