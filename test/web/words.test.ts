/**
 * The web app's words for problems: every problem document the server can answer becomes a
 * sentence a person understands, saying what to do (when to retry, what the limit is).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PostboxConnectionError, PostboxError } from '../../src/client/index.js';
import type { Problem } from '../../src/protocol/types.js';
import { byteLength, idTaken, sentence, shortTime, userIdProblem } from '../../web/src/words.js';

function problem(code: string, status: number, detail: string, extra: Partial<Problem> = {}, retryAfter?: number): PostboxError {
  return new PostboxError(
    { type: `/problems/${code}`, title: code, status, detail, errors: [], ...extra },
    { method: 'POST', url: 'http://x/v1/messages', ...(retryAfter === undefined ? {} : { retryAfter }) },
  );
}

describe('web app words', () => {
  it('says when to retry after a rate limit', () => {
    assert.equal(sentence(problem('rate_limited', 429, 'rate limit of 10 requests a minute reached', {}, 30)),
      'Too many requests in a short time. Try again in 30 seconds.');
    assert.equal(sentence(problem('rate_limited', 429, 'x', {}, 120)), 'Too many requests in a short time. Try again in 2 minutes.');
  });

  it('gives the limit of a message too long', () => {
    assert.equal(sentence(problem('payload_too_large', 413, 'message is 70000 bytes; the limit is 65536')),
      'This message is too long: the limit is 65,536 bytes. Shorten it and send again.');
    // The server's body-size 413 (src/http/problems.ts) words its limit differently.
    assert.equal(sentence(problem('payload_too_large', 413, 'the body is larger than the 1048576-byte limit')),
      'This message is too long: the limit is 1,048,576 bytes. Shorten it and send again.');
    assert.equal(sentence(problem('payload_too_large', 413, 'too big')),
      'This message is too long for the server. Shorten it and send again.');
  });

  it('says storage unavailable means try again shortly, and nothing was lost', () => {
    assert.equal(sentence(problem('storage_unavailable', 503, 'the database is not answering')),
      'The server cannot reach its storage right now. Nothing was lost; try again shortly.');
  });

  it('words the other problems for a person, never as raw JSON', () => {
    const cases: [PostboxError | Error, RegExp][] = [
      [problem('unauthorized', 401, 'the bearer token is not valid'), /^Your token is not valid: .*Sign in again\.$/],
      [problem('forbidden', 403, 'this token acts as "a", not "b"'), /^That is not allowed with this sign-in: this token acts as "a", not "b"\.$/],
      [problem('not_found', 404, 'no message 9'), /no longer there/],
      [problem('user_exists', 409, 'taken'), /^That id is taken: by a user, or by a removed user whose id stays reserved/],
      [problem('server_busy', 503, 'busy', {}, 5), /busy\. Try again in 5 seconds\./],
      [problem('validation', 400, 'toUser must not contain "/"', { errors: [{ field: 'toUser', message: 'must not contain "/"' }] }),
        /^That was not accepted: the user id must not contain "\/"\.$/],
      [problem('internal', 500, 'internal error', { requestId: 'r42' }), /reference r42/],
      [new PostboxConnectionError('http://x', new Error('ECONNREFUSED')), /^The server cannot be reached\./],
    ];
    for (const [err, expected] of cases) assert.match(sentence(err), expected);
  });

  it('tells a taken id from a removed user\'s reserved one, and says how to free the reserved one', () => {
    assert.equal(idTaken('ann', true), 'A user with that id already exists. Choose another id.');
    assert.equal(idTaken('zed', false),
      'That id belongs to a removed user and stays reserved, so that no one inherits their messages. Choose another id, ' +
      'or free it (deleting those messages) with "postbox users remove zed --purge" or the API\'s DELETE /v1/users/zed?purge=true.');
  });

  it('calls every field that holds a user id "the user id", the New conversation\'s peer too', () => {
    for (const field of ['toUser', 'fromUser', 'id', 'user', 'peer']) {
      const err = problem('validation', 400, `${field} must not use compatibility characters`,
        { errors: [{ field, message: 'must not use compatibility characters' }] });
      assert.equal(sentence(err), 'That was not accepted: the user id must not use compatibility characters.', field);
    }
  });

  it('gives short relative times for the list: now, minutes, hours, weekday, date', () => {
    const now = Date.parse('2026-03-12T12:00:00Z');
    const ago = (seconds: number) => new Date(now - seconds * 1000).toISOString();
    assert.equal(shortTime(ago(0), now), 'now');
    assert.equal(shortTime(ago(44), now), 'now');
    assert.equal(shortTime(ago(-30), now), 'now', 'a clock a little ahead is still now');
    assert.equal(shortTime(ago(45), now), '1 min');
    assert.equal(shortTime(ago(5 * 60), now), '5 min');
    assert.equal(shortTime(ago(59 * 60), now), '59 min');
    assert.equal(shortTime(ago(3600), now), '1 h');
    assert.equal(shortTime(ago(3 * 3600), now), '3 h');
    assert.equal(shortTime(ago(23 * 3600), now), '23 h');
    // Within the week, the weekday; older, the day and month (both in the runtime's locale).
    const twoDays = ago(2 * 86_400);
    assert.equal(shortTime(twoDays, now), new Date(twoDays).toLocaleDateString(undefined, { weekday: 'short' }));
    const tenDays = ago(10 * 86_400);
    assert.equal(shortTime(tenDays, now), new Date(tenDays).toLocaleDateString(undefined, { day: 'numeric', month: 'short' }));
    assert.notEqual(shortTime(twoDays, now), shortTime(tenDays, now));
  });

  it('counts bytes as the server does, and checks user ids as it does', () => {
    assert.equal(byteLength('aé🐙'), 1 + 2 + 4);
    assert.equal(userIdProblem('Val'), undefined);
    assert.match(userIdProblem('a/b')!, /"\/"/);
    assert.match(userIdProblem('')!, /Type a user id/);
    assert.match(userIdProblem('x'.repeat(129))!, /128/);
  });
});
