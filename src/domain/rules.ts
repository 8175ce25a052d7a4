/**
 * The contract's rules for user ids, message text, message ids and idempotency keys.
 *
 * The HTTP schemas reuse these patterns so the OpenAPI document states them, and the domain
 * applies them again, so that every path in (HTTP, CLI, import) obeys the same rules.
 */
import { AppError, invalid } from '../errors.js';

/** Longest user id, in characters (Unicode code points). */
export const USER_ID_MAX = 128;

/**
 * A user id: 1–128 characters, not only dots (`.` and `..` are path steps to every URL
 * library), none of them `/` or `\` (which URL libraries read as `/`), a control or format character (Unicode Cc, Cf: zero-width
 * and bidi controls), a line or paragraph separator (Zl, Zp), a space other than U+0020
 * (NBSP and the other Zs), a private-use or unassigned code point (Co, Cn), a default-
 * ignorable one (the Hangul fillers, variation selectors, U+034F) or the blank braille
 * pattern U+2800; not starting with a combining mark, and without leading, trailing or
 * doubled spaces: each would make two ids that look the same, or one that looks like
 * nothing, or an id no URL can reach. An ECMAScript pattern with the `u` flag, as JSON
 * Schema (and Ajv) read it. What no pattern can say, {@link userIdProblem} adds: the id
 * must not change under NFKC (fullwidth `Ａｌｉｃｅ` is refused, not folded into `Alice`).
 */
export const USER_ID_PATTERN = '^(?!\\.+$)(?! )(?!.* $)(?!.*  )(?!\\p{M})' +
  '(?:[^/\\\\\\p{Cc}\\p{Cf}\\p{Zl}\\p{Zp}\\p{Zs}\\p{Co}\\p{Cn}\\p{Default_Ignorable_Code_Point}\\u2800]| ){1,128}$';
const USER_ID_RE = new RegExp(USER_ID_PATTERN, 'u');
/** Characters that are invisible, blank, or mean nothing yet; U+0020 is taken out before this runs. */
const FORBIDDEN_CHAR_RE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Zs}\p{Co}\p{Cn}\p{Default_Ignorable_Code_Point}\u2800]/u;

/** `U+XXXX` for the first code point of `char`. */
function codePointName(char: string): string {
  return `U+${char.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** A message id: the decimal form of a positive sequence number, at most 15 digits (below 2^53). */
export const MESSAGE_ID_PATTERN = '^[1-9][0-9]{0,14}$';
const MESSAGE_ID_RE = new RegExp(MESSAGE_ID_PATTERN);

/** A cursor: a message id, or 0 for "before the first message". */
export const CURSOR_PATTERN = '^(?:0|[1-9][0-9]{0,14})$';
const CURSOR_RE = new RegExp(CURSOR_PATTERN);

/** An idempotency key: 1–255 printable ASCII characters. */
export const IDEMPOTENCY_KEY_PATTERN = '^[\\x20-\\x7E]{1,255}$';
const IDEMPOTENCY_KEY_RE = new RegExp(IDEMPOTENCY_KEY_PATTERN);

/** Largest page size. */
export const MAX_PAGE = 500;
/** Page size when none is asked for. */
export const DEFAULT_PAGE = 50;
/** Longest long-poll, in seconds. */
export const MAX_WAIT_SECONDS = 60;

/**
 * Why a user id (already NFC) is unusable, or null if it is fine. The one statement of the
 * rule, with {@link USER_ID_PATTERN}: every way in (a body, a path, a JWT `sub`, an import
 * line, a stored id reported at start) asks it, through {@link toUserId} or {@link exactIdProblem}.
 */
export function userIdProblem(id: string): string | null {
  if (id.length === 0) return 'must not be empty';
  if (!id.isWellFormed()) return 'must be valid Unicode text';
  if ([...id].length > USER_ID_MAX) return `must be at most ${USER_ID_MAX} characters`;
  if (id.includes('/')) return 'must not contain "/"';
  // URL libraries (WHATWG URL, so every browser's fetch) read a backslash as a slash too.
  if (id.includes('\\')) return 'must not contain "\\" (URL libraries read it as "/")';
  if (/^\.+$/.test(id)) return 'must not be only dots ("." and ".." are not reachable in a URL)';
  const bad = FORBIDDEN_CHAR_RE.exec(id.replaceAll(' ', ''));
  if (bad) {
    return 'must not contain invisible, blank, control, format, separator, private-use, unassigned or non-ASCII space ' +
      `characters (found ${codePointName(bad[0])})`;
  }
  if (/^\p{M}/u.test(id)) return `must not start with a combining mark (found ${codePointName(id)})`;
  if (id.startsWith(' ') || id.endsWith(' ')) return 'must not start or end with a space';
  if (id.includes('  ')) return 'must not contain two spaces in a row';
  // A compatibility form looks like its plain form; folding it silently would merge two
  // people's ids, so it is refused, naming the form to use.
  const plain = id.normalize('NFKC');
  if (plain !== id) {
    const use = userIdProblem(plain) === null ? `: use "${plain}"` : '';
    return `must not use compatibility characters (fullwidth or halfwidth forms, ligatures, superscripts, …)${use}`;
  }
  if (!USER_ID_RE.test(id)) return 'is not a valid user id';
  return null;
}

/**
 * Why an id taken exactly as given would not be accepted, or null: {@link userIdProblem},
 * and it must already be in NFC. For ids that are not normalised on the way in: a JWT's
 * `sub` (which must name one user exactly), an import line, and ids found in a store (put
 * there under an older rule: reported, never changed or deleted, as they name someone's messages).
 */
export function exactIdProblem(id: string): string | null {
  if (id.isWellFormed() && id !== id.normalize('NFC')) return 'is not in Unicode NFC (a look-alike of the composed form)';
  return userIdProblem(id);
}

/** A user id in its one stored form: Unicode NFC, so `café` typed either way is one user. */
export function normalizeUserId(id: string): string {
  return id.isWellFormed() ? id.normalize('NFC') : id;
}

/**
 * A user id as the contract accepts it: a string, or a JSON number stored as its decimal
 * string (`2` → `"2"`). Throws a 400 naming `field` for anything else.
 */
export function toUserId(value: unknown, field: string): string {
  let id: string;
  if (typeof value === 'string') id = value;
  else if (typeof value === 'number' && Number.isFinite(value)) id = String(value);
  else if (value === undefined || value === null) throw invalid(field, 'is required');
  else throw invalid(field, 'must be a string or a number');
  id = normalizeUserId(id);
  const problem = userIdProblem(id);
  if (problem) throw invalid(field, problem);
  return id;
}

/** Checks message text: a string of at most `maxBytes` UTF-8 bytes (413 past that). */
export function toMessageText(value: unknown, maxBytes: number): string {
  if (value === undefined || value === null) throw invalid('message', 'is required');
  if (typeof value !== 'string') throw invalid('message', 'must be a string');
  if (!value.isWellFormed()) throw invalid('message', 'must be valid Unicode text');
  // PostgreSQL's text cannot hold U+0000; one rule on every backend keeps stores movable.
  if (value.includes('\u0000')) throw invalid('message', 'must not contain the NUL character (U+0000)');
  // Cheap bound first: a string never takes more than 3 UTF-8 bytes per UTF-16 unit.
  if (value.length * 3 > maxBytes) {
    const bytes = Buffer.byteLength(value, 'utf8');
    if (bytes > maxBytes) {
      throw new AppError('payload_too_large', `message is ${bytes} bytes; the limit is ${maxBytes}`, {
        errors: [{ field: 'message', message: `must be at most ${maxBytes} UTF-8 bytes` }],
      });
    }
  }
  return value;
}

/** The sequence number of a message id, or null if it is not one. */
export function messageSeq(id: string): number | null {
  return MESSAGE_ID_RE.test(id) ? Number(id) : null;
}

/** A cursor parameter as a sequence number; a 400 naming `field` if it is not a message id (or 0). */
export function toCursor(value: string, field: string): number {
  if (!CURSOR_RE.test(value)) throw invalid(field, 'must be a message id (or 0 for the very start)');
  return Number(value);
}

/** Checks an Idempotency-Key header value. */
export function toIdempotencyKey(value: string): string {
  if (!IDEMPOTENCY_KEY_RE.test(value)) {
    throw invalid('Idempotency-Key', 'must be 1 to 255 printable ASCII characters');
  }
  return value;
}
