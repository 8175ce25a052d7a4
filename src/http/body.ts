/**
 * Reading request bodies the way the seed's clients send them.
 *
 * `requests.post(url, data='{...}')` sends JSON with no Content-Type at all, so a body is
 * read as JSON whatever its declared type (as the seed's Flask `json.loads(request.data)`
 * did), except form fields (`application/x-www-form-urlencoded`), which are read as fields.
 * `curl -d '{...}'` labels JSON as form fields; a "form" that begins with `{` is read as the
 * JSON it is, since no real form's first field name starts with a brace.
 * 415 is kept for bodies that cannot be read at all: compressed, multipart, or in a charset
 * other than UTF-8.
 */
import type { FastifyInstance } from 'fastify';
import { AppError, invalid } from '../errors.js';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
const READABLE = 'send JSON (any or no Content-Type) or form fields (application/x-www-form-urlencoded)';

function unsupported(detail: string): AppError {
  return new AppError('unsupported_media_type', `${detail}; ${READABLE}`);
}

/** Parses `type/subtype; charset=x` into its lower-cased media type and charset. */
function mediaType(header: string | undefined): { type: string; charset: string | undefined } {
  if (!header) return { type: '', charset: undefined };
  const [type = '', ...params] = header.split(';');
  let charset: string | undefined;
  for (const p of params) {
    const [k, v] = p.split('=');
    if (k?.trim().toLowerCase() === 'charset' && v) charset = v.trim().replace(/^"|"$/g, '').toLowerCase();
  }
  return { type: type.trim().toLowerCase(), charset };
}

/** Decodes `a=1&b=2` strictly: invalid percent-escapes or UTF-8 are a 400, a repeated field too. */
function formFields(text: string): Record<string, string> {
  const fields = new Map<string, string>();
  for (const pair of text.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const [rawKey, rawValue] = eq < 0 ? [pair, ''] : [pair.slice(0, eq), pair.slice(eq + 1)];
    let key: string;
    let value: string;
    try {
      key = decodeURIComponent(rawKey.replace(/\+/g, ' '));
      value = decodeURIComponent(rawValue.replace(/\+/g, ' '));
    } catch {
      throw invalid('body', 'has a form field that is not valid percent-encoded UTF-8');
    }
    if (fields.has(key)) throw invalid(key, 'is given more than once');
    fields.set(key, value);
  }
  return Object.fromEntries(fields);
}

/** Turns a raw body into the value the route validates. */
export function decodeBody(headers: Record<string, string | string[] | undefined>, raw: Buffer): unknown {
  const encoding = headers['content-encoding'];
  if (typeof encoding === 'string' && encoding.trim() !== '' && encoding.trim().toLowerCase() !== 'identity') {
    throw unsupported(`Content-Encoding "${encoding}" is not supported`);
  }
  const { type, charset } = mediaType(headers['content-type'] as string | undefined);
  if (type.startsWith('multipart/')) throw unsupported(`${type} bodies are not supported`);
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8' && charset !== 'us-ascii') {
    throw unsupported(`charset "${charset}" is not supported`);
  }
  let text: string;
  try {
    text = utf8.decode(raw);
  } catch {
    throw invalid('body', 'is not valid UTF-8');
  }
  if (type === 'application/x-www-form-urlencoded' && !text.trimStart().startsWith('{')) return formFields(text);
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw invalid('body', `is not valid JSON (${(err as Error).message})`);
  }
}

/** Replaces Fastify's parsers with {@link decodeBody} for every content type. */
export function registerBodyParser(app: FastifyInstance, bodyLimit: number): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit }, (request, body, done) => {
    try {
      done(null, decodeBody(request.headers, body as Buffer));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
}
