/**
 * Words for people: every error the app can meet as a sentence, times as "5 min ago", sizes
 * in bytes as the server counts them.
 */
import { PostboxConnectionError, PostboxError } from '../../src/client/index.js';

const encoder = new TextEncoder();

/** The size of `text` as the server measures the message limit: UTF-8 bytes. */
export function byteLength(text: string): number {
  return encoder.encode(text).length;
}

function seconds(n: number): string {
  if (n < 90) return `${n} second${n === 1 ? '' : 's'}`;
  const minutes = Math.ceil(n / 60);
  return `${minutes} minute${minutes === 1 ? '' : 's'}`;
}

/** The problem `type`'s last part (`/problems/rate_limited` → `rate_limited`). */
function code(err: PostboxError): string {
  return err.type.slice(err.type.lastIndexOf('/') + 1);
}

/** Fields that hold a user id, whatever the route calls them: a person typed each as "user id". */
const USER_ID_FIELDS = new Set(['toUser', 'fromUser', 'id', 'user', 'peer']);

/** What went wrong, as one sentence a person understands, with what to do about it. */
export function sentence(err: unknown): string {
  if (err instanceof PostboxConnectionError) {
    return 'The server cannot be reached. Check your connection; the app keeps trying.';
  }
  if (err instanceof PostboxError) {
    // A message over the limit says "the limit is N"; a body over the server's body limit
    // says "larger than the N-byte limit". Both give the number a person needs.
    const found = /limit is (\d+)|(\d+)-byte limit/.exec(err.detail);
    const limit = found?.[1] ?? found?.[2];
    switch (code(err)) {
      case 'rate_limited':
        return `Too many requests in a short time. Try again in ${seconds(err.retryAfter ?? 60)}.`;
      case 'payload_too_large':
        return limit
          ? `This message is too long: the limit is ${Number(limit).toLocaleString('en')} bytes. Shorten it and send again.`
          : 'This message is too long for the server. Shorten it and send again.';
      case 'storage_unavailable':
        return 'The server cannot reach its storage right now. Nothing was lost; try again shortly.';
      case 'server_busy':
        return `The server is busy. Try again in ${seconds(err.retryAfter ?? 5)}.`;
      case 'too_many_streams':
        return 'Too many windows are following this account live. Close some tabs; this one keeps trying.';
      case 'unauthorized':
        return 'Your token is not valid: it may have been revoked, mistyped, or be for another server. Sign in again.';
      case 'forbidden':
        return `That is not allowed with this sign-in: ${err.detail}.`;
      case 'not_found':
        return 'That is no longer there: it may have been deleted.';
      case 'unknown_recipient':
        return 'There is no such user on this server. Check the user id.';
      case 'user_exists':
        // The server's 409 does not say which: a current user, or a removed one's reserved id.
        return 'That id is taken: by a user, or by a removed user whose id stays reserved so that no one inherits their messages. Choose another id.';
      case 'validation': {
        const fields = err.errors.map((e) => `${USER_ID_FIELDS.has(e.field) ? 'the user id' : e.field} ${e.message}`);
        return `That was not accepted: ${fields.length > 0 ? fields.join('; ') : err.detail}.`;
      }
      case 'internal':
        return `Something went wrong on the server (reference ${err.problem.requestId ?? 'unknown'}). Try again; if it persists, tell the server's operator.`;
      default:
        return `The server refused: ${err.detail || err.title}.`;
    }
  }
  return `Something went wrong: ${err instanceof Error ? err.message : String(err)}.`;
}

/**
 * The admin page's words for a 409 `user_exists` on adding `id`: it knows whether `id` is a
 * current user (`current`); if not, it is a removed user's id, reserved until purged, which
 * the page's Remove does not do (it never deletes messages), so the sentence names what does.
 */
export function idTaken(id: string, current: boolean): string {
  if (current) return 'A user with that id already exists. Choose another id.';
  return `That id belongs to a removed user and stays reserved, so that no one inherits their messages. Choose another id, or free it (deleting those messages) with "postbox users remove ${id} --purge" or the API's DELETE /v1/users/${encodeURIComponent(id)}?purge=true.`;
}

/** "now", "5 min", "3 h", "Mon", "12 Mar": short, for lists; `title` carries the full time. */
export function shortTime(iso: string, now = Date.now()): string {
  const then = Date.parse(iso);
  const diff = Math.max(0, now - then) / 1000;
  if (diff < 45) return 'now';
  if (diff < 3600) return `${Math.round(diff / 60)} min`;
  if (diff < 86_400) return `${Math.round(diff / 3600)} h`;
  const date = new Date(then);
  if (diff < 6 * 86_400) return date.toLocaleDateString(undefined, { weekday: 'short' });
  return date.toLocaleDateString(undefined, { day: 'numeric', month: 'short' });
}

/** The full local date and time, for a tooltip. */
export function fullTime(iso: string): string {
  return new Date(iso).toLocaleString();
}

/** A user id the server would take: 1–128 characters, no "/" or "\\" and no control characters. */
export function userIdProblem(id: string): string | undefined {
  if (id.length === 0) return 'Type a user id.';
  if ([...id].length > 128) return 'A user id has at most 128 characters.';
  if (id.includes('/') || id.includes('\\')) return 'A user id cannot contain "/" or "\\".';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(id)) return 'A user id cannot contain control characters.';
  return undefined;
}
