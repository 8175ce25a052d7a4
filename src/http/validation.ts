/**
 * Schema validation for the routes, and the mapping of its failures to problem fields.
 *
 * Two Ajv instances: bodies are validated exactly as sent (no coercion, so `true` is never
 * taken for the user id "true"), while query strings, paths and headers, which are text by
 * nature, are coerced to the declared types (`limit=20` → 20).
 */
import { Ajv, type ErrorObject, type Options } from 'ajv';
import type { FastifySchemaCompiler } from 'fastify';
import type { FieldError } from '../errors.js';

function makeAjv(options: Options): Ajv {
  const ajv = new Ajv({
    allErrors: true,
    verbose: true,
    useDefaults: true,
    removeAdditional: false,
    strict: true,
    allowUnionTypes: true,
    ...options,
  });
  // Annotations of ours: the message shown when a pattern fails, and OpenAPI's examples.
  ajv.addKeyword({ keyword: 'x-error', schemaType: 'string' });
  ajv.addKeyword({ keyword: 'example' });
  ajv.addFormat('date-time', true);
  return ajv;
}

/** Fastify's validator compiler: strict for bodies, coercing for everything else. */
export function validatorCompiler(): FastifySchemaCompiler<unknown> {
  const bodies = makeAjv({ coerceTypes: false });
  const text = makeAjv({ coerceTypes: true });
  return ({ schema, httpPart }) => (httpPart === 'body' ? bodies : text).compile(schema as object);
}

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  integer: 'a whole number',
  boolean: 'true or false',
  object: 'a JSON object',
  array: 'a list',
  null: 'null',
};

function describe(e: ErrorObject): string {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required': return 'is required';
    case 'type': {
      const types = (Array.isArray(p.type) ? p.type : String(p.type).split(',')) as string[];
      return `must be ${types.map((t) => TYPE_NAMES[t] ?? t).join(' or ')}`;
    }
    case 'minimum': return `must be at least ${String(p.limit)}`;
    case 'maximum': return `must be at most ${String(p.limit)}`;
    case 'minLength': return p.limit === 1 ? 'must not be empty' : `must be at least ${String(p.limit)} characters`;
    case 'maxLength': return `must be at most ${String(p.limit)} characters`;
    case 'maxItems': return `must have at most ${String(p.limit)} items`;
    case 'pattern': {
      const custom = e.parentSchema?.['x-error'] as unknown;
      return typeof custom === 'string' ? custom : 'is not in the expected format';
    }
    case 'enum': return `must be one of ${(p.allowedValues as unknown[]).map(String).join(', ')}`;
    case 'const': return `must be ${JSON.stringify(p.allowedValue)}`;
    case 'additionalProperties': return 'is not a known field';
    default: return e.message ?? 'is invalid';
  }
}

/**
 * Ajv's errors as the problem document's `errors`: one entry per field, named as the client
 * wrote it (`toUser`, `limit`, `ids/2`), or by `context` when the whole input is wrong.
 */
export function fieldErrors(errors: readonly ErrorObject[], context: string): FieldError[] {
  // A oneOf with a message of its own (`x-error`): when no branch failed on a field's value,
  // only on which fields are there, that message says it better than every branch's.
  const choice = errors.find((e) => e.keyword === 'oneOf' && typeof e.parentSchema?.['x-error'] === 'string');
  if (choice) {
    const specific = errors.filter((e) => !['oneOf', 'required', 'additionalProperties'].includes(e.keyword));
    if (specific.length === 0) {
      return [{ field: choice.instancePath.replace(/^\//, '') || context, message: choice.parentSchema!['x-error'] as string }];
    }
    errors = specific;
  }
  const out = new Map<string, string>();
  for (const e of errors) {
    // anyOf reports each branch, then its own summary; the branches say it better.
    if (e.keyword === 'anyOf' || e.keyword === 'oneOf' || e.keyword === 'if') continue;
    let field = e.instancePath.replace(/^\//, '').replace(/~1/g, '/').replace(/~0/g, '~');
    const p = e.params as Record<string, unknown>;
    if (e.keyword === 'required') field = [field, String(p.missingProperty)].filter(Boolean).join('/');
    if (e.keyword === 'additionalProperties') field = [field, String(p.additionalProperty)].filter(Boolean).join('/');
    if (field === '') field = context;
    if (!out.has(field)) out.set(field, describe(e));
  }
  return [...out].map(([field, message]) => ({ field, message }));
}
