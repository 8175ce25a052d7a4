/**
 * The document is the truth: every operation of `/openapi.json` is driven with one valid
 * request, with invalid ones derived from its own schemas, with unknown ids in each path
 * parameter and with no credentials, in open, token and JWT mode; every answer must be one
 * the document promises — its status, its media type, its body's schema, and every header
 * (only the documented ones and a few of the transport's). Every method a known path lacks
 * (TRACE and QUERY included) must be the documented 405 with `Allow`.
 */
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import * as jose from 'jose';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { openStream } from '../helpers/sse.js';

const ADMIN = 'admin-token-for-tests-0123456789';
const JWT_SECRET = 'driver-jwt-secret-that-is-long-enough-0123456789';
/** Headers any HTTP answer may carry whatever the document says: the transport's, and CORS's. */
const TRANSPORT_HEADERS = ['content-type', 'content-length', 'date', 'connection', 'keep-alive', 'transfer-encoding', 'vary'];
/** A webhook destination nothing listens on: deliveries to it stay pending, which is all the driver needs. */
const HOOK_URL = 'http://127.0.0.1:9/driver-hook';

type Schema = Record<string, unknown>;
interface Parameter { name: string; in: 'path' | 'query' | 'header'; required?: boolean; schema: Schema }
interface Header { $ref?: string; required?: boolean }
interface Response { $ref?: string; content?: Record<string, { schema: Schema }>; headers?: Record<string, Header> }
interface Operation {
  parameters?: Parameter[];
  requestBody?: { required?: boolean; content: Record<string, { schema: Schema }> };
  responses: Record<string, Response>;
  security?: Record<string, string[]>[];
}
interface Doc {
  paths: Record<string, Record<string, Operation>>;
  components: { responses?: Record<string, Response>; headers?: Record<string, Header> };
}

/** An answer as the driver sees it, over inject or (for the stream) a real socket. */
interface Answer { statusCode: number; headers: IncomingHttpHeaders | Record<string, string | string[] | number | undefined>; body: string }

/** One request as the driver makes it. */
interface Call {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  body?: unknown;
  /** What was made invalid, for the failure message. */
  what: string;
}

/** Strings that break common constraints; the first that a schema refuses is used. */
const BAD_STRINGS = ['\u0000', 'a\u0000b', '..', '.', 'abc', '-1', 'a/b', 'A\u200Bb', 'x'.repeat(300), ''];

function escapePointer(s: string): string {
  return s.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** The application's JWT for `sub`, as JWT mode accepts it. */
function appJwt(sub: string): Promise<string> {
  return new jose.SignJWT({ sub, exp: Math.floor(Date.now() / 1000) + 600 })
    .setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(JWT_SECRET));
}

describe('the OpenAPI document drives the server', () => {
  for (const mode of ['open', 'token', 'jwt'] as const) {
    describe(`${mode} mode`, () => {
      let server: TestServer;
      let doc: Doc;
      let ajv: Ajv2020;
      const tokens = new Map<string, string>();
      let counter = 0;

      /** Sends a call; the stream's is opened on a real socket and closed once its headers (or its refusal) are in. */
      async function drive(call: Call): Promise<Answer> {
        if (call.path.endsWith('/stream') && call.method === 'GET') {
          const qs = new URLSearchParams(call.query).toString();
          const stream = await openStream(server.url, `${call.path}${qs ? `?${qs}` : ''}`, call.headers);
          if (stream.status !== 200) await stream.ended;
          stream.close();
          return { statusCode: stream.status, headers: stream.headers, body: stream.status === 200 ? '' : stream.body() };
        }
        return server.app.inject({
          method: call.method as 'GET',
          url: call.path,
          query: call.query,
          headers: { ...call.headers, ...(call.body === undefined ? {} : { 'content-type': 'application/json' }) },
          ...(call.body === undefined ? {} : { payload: JSON.stringify(call.body) }),
        });
      }

      async function makeUser(): Promise<string> {
        const id = `${mode}-u${++counter}`;
        const res = await server.app.inject({ method: 'POST', url: '/v1/users', headers: { authorization: `Bearer ${ADMIN}` }, payload: { id } });
        assert.equal(res.statusCode, 201, res.body);
        // JWT mode: the user acts with the application's own JWT, not a Postbox token.
        tokens.set(id, mode === 'jwt' ? await appJwt(id) : res.json<{ token: string }>().token);
        return id;
      }

      async function makeMessage(from: string, to: string): Promise<string> {
        const res = await server.app.inject({
          method: 'POST', url: '/v1/messages',
          headers: mode === 'open' ? {} : { authorization: `Bearer ${tokens.get(from)}` },
          payload: { fromUser: from, toUser: to, message: 'driver' },
        });
        assert.equal(res.statusCode, 201, res.body);
        return res.json<{ id: string }>().id;
      }

      async function makeWebhook(): Promise<string> {
        const res = await server.app.inject({
          method: 'POST', url: '/v1/webhooks', headers: { authorization: `Bearer ${ADMIN}` },
          payload: { url: HOOK_URL, events: ['message.created'] },
        });
        assert.equal(res.statusCode, 201, res.body);
        return res.json<{ id: string }>().id;
      }

      /** A delivery of `webhook`: a message is sent, and its outbox row is the delivery. */
      async function makeDelivery(webhook: string, from: string, to: string): Promise<string> {
        await makeMessage(from, to);
        const res = await server.app.inject({ method: 'GET', url: `/v1/webhooks/${webhook}/deliveries`, headers: { authorization: `Bearer ${ADMIN}` } });
        assert.equal(res.statusCode, 200, res.body);
        const [delivery] = res.json<{ deliveries: { id: string | number }[] }>().deliveries;
        assert.ok(delivery, 'the send wrote a delivery');
        return String(delivery.id);
      }

      /** A valid value for a schema, by the field's name where the schema alone cannot say. */
      function sample(schema: Schema, name: string, fixtures: Record<string, unknown>): unknown {
        if (name in fixtures) return fixtures[name];
        if (Array.isArray(schema.oneOf)) return sample(schema.oneOf[0] as Schema, name, fixtures);
        if (Array.isArray(schema.examples) && schema.examples.length > 0) return schema.examples[0];
        const type: unknown = Array.isArray(schema.type) ? (schema.type as unknown[])[0] : schema.type;
        switch (type) {
          case 'object': {
            const out: Record<string, unknown> = {};
            const props = (schema.properties ?? {}) as Record<string, Schema>;
            for (const key of (schema.required as string[] | undefined) ?? []) out[key] = sample(props[key]!, key, fixtures);
            return out;
          }
          case 'array': return [];
          case 'integer': case 'number': return typeof schema.minimum === 'number' ? schema.minimum : 1;
          case 'boolean': return true;
          default: return 'x';
        }
      }

      /** Values the schema refuses, each with what makes it wrong. */
      function violations(schema: Schema, where: 'query' | 'path' | 'header' | 'body'): { value: unknown; what: string }[] {
        const validate = ajv.compile(schema) as (data: unknown) => boolean;
        const out: { value: unknown; what: string }[] = [];
        const type = Array.isArray(schema.type) ? schema.type : [schema.type];
        if (type.includes('string') || schema.pattern !== undefined || schema.maxLength !== undefined) {
          const bad = BAD_STRINGS.find((s) => !validate(s) && !(where === 'path' && /^\.+$/.test(s)) && !(where === 'header' && s.includes('\u0000')));
          if (bad !== undefined) out.push({ value: bad, what: `string ${JSON.stringify(bad.slice(0, 20))}` });
        }
        if ((type.includes('integer') || type.includes('number')) && !type.includes('string')) {
          out.push({ value: 'abc', what: 'not a number' });
          if (typeof schema.minimum === 'number') out.push({ value: schema.minimum - 1, what: 'below the minimum' });
          if (typeof schema.maximum === 'number') out.push({ value: schema.maximum + 1, what: 'above the maximum' });
        }
        if (type.includes('boolean')) out.push({ value: 'maybe', what: 'not a boolean' });
        if (where === 'body' && !type.includes('object')) out.push({ value: { nested: true }, what: 'an object' });
        return out;
      }

      /** The document's object behind a `$ref` of its components, or the object itself. */
      function resolve<T extends { $ref?: string }>(value: T, kind: 'responses' | 'headers'): T {
        if (value.$ref === undefined) return value;
        const name = value.$ref.replace(`#/components/${kind}/`, '');
        const target = doc.components[kind]?.[name];
        assert.ok(target, `${value.$ref} resolves`);
        return target as T;
      }

      /** Every header of the answer is documented for its status (or the transport's), and every required one is there. */
      function assertHeaders(promised: Response, res: Answer, label: string): void {
        const documented = new Map(Object.entries(promised.headers ?? {}).map(([name, h]) => [name.toLowerCase(), resolve(h, 'headers')]));
        for (const name of Object.keys(res.headers)) {
          const lower = name.toLowerCase();
          if (TRANSPORT_HEADERS.includes(lower) || lower.startsWith('access-control-')) continue;
          assert.ok(documented.has(lower), `undocumented header ${name}: ${String(res.headers[name])}: ${label}`);
        }
        for (const [name, header] of documented) {
          if (header.required) assert.ok(res.headers[name] !== undefined, `documented as required, missing: ${name}: ${label}`);
        }
      }

      /** Checks an answer against what the document promises for `op`. */
      function assertPromised(op: Operation, path: string, method: string, call: Call, res: Answer): void {
        const label = `${method.toUpperCase()} ${call.path} (${call.what}) → ${res.statusCode} ${res.body.slice(0, 300)}`;
        const status = String(res.statusCode);
        const listed = op.responses[status] ?? op.responses.default;
        assert.ok(listed, `undocumented status: ${label}`);
        const promised = resolve(listed, 'responses');
        assert.ok(res.statusCode < 500, `a server error: ${label}`);
        assert.equal(res.headers['x-content-type-options'], 'nosniff', label);
        assert.equal(res.headers['x-frame-options'], 'DENY', label);
        if (res.statusCode === 429 || res.statusCode === 503) assert.ok(res.headers['retry-after'], `Retry-After: ${label}`);
        assertHeaders(promised, res, label);
        const content = promised.content;
        if (!content || res.statusCode === 204) {
          assert.equal(res.body, '', `no body promised: ${label}`);
          return;
        }
        const type = String(res.headers['content-type'] ?? '').split(';')[0]!.trim();
        assert.ok(type in content, `media type ${type} not promised (${Object.keys(content).join(', ')}): ${label}`);
        if (type.endsWith('json')) {
          const base = listed.$ref ? listed.$ref.replace(/^#/, 'doc#') : `doc#/paths/${escapePointer(path)}/${method}/responses/${status}`;
          const pointer = `${base}/content/${escapePointer(type)}/schema`;
          const ok = ajv.validate({ $ref: pointer }, JSON.parse(res.body));
          assert.ok(ok, `body breaks its schema: ${label}: ${ajv.errorsText(ajv.errors)}`);
        }
      }

      before(async () => {
        server = await startTestServer({
          POSTBOX_AUTH: mode, POSTBOX_ADMIN_TOKEN: ADMIN, POSTBOX_RATE_LIMIT: '100000', POSTBOX_WEBHOOK_ALLOW_PRIVATE: 'true',
          ...(mode === 'jwt' ? { POSTBOX_JWT_SECRET: JWT_SECRET } : {}),
        });
        doc = (await server.app.inject({ method: 'GET', url: '/openapi.json' })).json<Doc>();
        ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
        ajv.addSchema(doc, 'doc');
      });
      after(() => server.stop());

      it(`marks anonymous calls ${mode === 'open' ? 'allowed' : 'refused'} on user routes, and the admin token required on admin routes`, () => {
        const inbox = doc.paths['/v1/users/{user}/messages']!.get!;
        assert.deepEqual(inbox.security, mode === 'open' ? [{}, { bearer: [] }] : [{ bearer: [] }]);
        assert.deepEqual(doc.paths['/v1/users']!.post!.security, [{ bearer: [] }]);
        // Issuing and revoking tokens needs a token in every mode: the admin's, in open mode.
        assert.deepEqual(doc.paths['/v1/users/{user}/tokens']!.post!.security, [{ bearer: [] }]);
        assert.deepEqual(doc.paths['/v1/users/{user}/tokens']!.delete!.security, [{ bearer: [] }]);
        const send = doc.paths['/v1/messages']!.post!.requestBody!.content['application/json']!.schema;
        assert.equal(((send.required as string[]).includes('fromUser')), mode === 'open', 'fromUser required exactly in open mode');
        assert.ok(doc.paths['/metrics']!.get!.responses['200'], '/metrics documents its 200');
      });

      it('answers one valid request per operation as documented', async () => {
        const ann = await makeUser();
        const bob = await makeUser();
        for (const [path, ops] of Object.entries(doc.paths)) {
          for (const [method, op] of Object.entries(ops)) {
            if (method === 'parameters') continue;
            const call = await validCall(path, method, op, ann, bob);
            const res = await drive(call);
            assertPromised(op, path, method, call, res);
            if (path.endsWith('/stream')) {
              assert.match(String(res.headers['content-type']), /^text\/event-stream/);
              assert.equal(res.headers['cache-control'], 'no-store, no-transform', 'a user\'s messages: never stored');
            }
            assert.ok(res.statusCode < 300, `the valid request succeeds: ${method} ${call.path} → ${res.statusCode} ${res.body}`);
          }
        }
      });

      it('answers invalid requests derived from each operation\'s schemas with a documented 4xx problem', async () => {
        const ann = await makeUser();
        const bob = await makeUser();
        let tried = 0;
        for (const [path, ops] of Object.entries(doc.paths)) {
          for (const [method, op] of Object.entries(ops)) {
            if (method === 'parameters') continue;
            for (const call of await invalidCalls(path, method, op, ann, bob)) {
              tried++;
              const res = await drive(call);
              assertPromised(op, path, method, call, res);
              assert.ok(res.statusCode >= 400 && res.statusCode < 500, `refused: ${method} ${call.path} (${call.what}) → ${res.statusCode}`);
              assert.match(String(res.headers['content-type']), /application\/problem\+json/);
            }
          }
        }
        assert.ok(tried > 40, `derived ${tried} invalid requests`);
      });

      it('answers an unknown id in each path parameter with a documented answer', async () => {
        const ann = await makeUser();
        const bob = await makeUser();
        const unknown: Record<string, string> = { user: `${mode}-nobody`, peer: `${mode}-nobody`, id: '987654321', deliveryId: '987654321' };
        let tried = 0;
        for (const [path, ops] of Object.entries(doc.paths)) {
          for (const [method, op] of Object.entries(ops)) {
            if (method === 'parameters') continue;
            const base = await validCall(path, method, op, ann, bob);
            for (const p of (op.parameters ?? []).filter((q) => q.in === 'path')) {
              // The unknown value in this parameter, the others as the valid call had them.
              const validParts = base.path.split('/');
              const url = path.split('/').map((seg, i) => (seg === `{${p.name}}` ? encodeURIComponent(unknown[p.name] ?? 'unknown1') : validParts[i]!)).join('/');
              const call: Call = { ...base, path: url, what: `unknown ${p.name}` };
              tried++;
              assertPromised(op, path, method, call, await drive(call));
            }
          }
        }
        assert.ok(tried > 15, `tried ${tried} unknown ids`);
      });

      it('answers calls with no credentials as the document\'s security says', async () => {
        const ann = await makeUser();
        const bob = await makeUser();
        for (const [path, ops] of Object.entries(doc.paths)) {
          for (const [method, op] of Object.entries(ops)) {
            if (method === 'parameters') continue;
            const valid = await validCall(path, method, op, ann, bob);
            const headers = { ...valid.headers };
            delete headers.authorization;
            const call: Call = { ...valid, headers, what: 'no credentials' };
            const res = await drive(call);
            assertPromised(op, path, method, call, res);
            const anonymous = op.security === undefined || op.security.some((r) => Object.keys(r).length === 0);
            if (anonymous) assert.ok(res.statusCode < 400, `documented as open to anyone: ${method} ${call.path} → ${res.statusCode} ${res.body}`);
            else assert.ok(res.statusCode === 401 || res.statusCode === 403, `documented as needing a token: ${method} ${call.path} → ${res.statusCode}`);
          }
        }
      });

      it('answers every method a documented path lacks with its documented 405 and Allow', async () => {
        for (const [path, ops] of Object.entries(doc.paths)) {
          const url = path.replace(/\{[^}]+\}/g, 'x1');
          const documented = new Set(Object.keys(ops).map((m) => m.toUpperCase()));
          const [firstMethod, firstOp] = Object.entries(ops)[0]!;
          for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'TRACE', 'QUERY', 'PROPFIND']) {
            if (documented.has(method) || (method === 'GET' && documented.has('HEAD'))) continue;
            for (const headers of [{}, ...(mode === 'open' ? [] : [{ authorization: `Bearer ${ADMIN}` }])] as Record<string, string>[]) {
              const call: Call = { method, path: url, query: {}, headers, what: `unregistered method${'authorization' in headers ? ', admin token' : ''}` };
              const res = await drive(call);
              assert.equal(res.statusCode, 405, `${method} ${url}: ${res.statusCode} ${res.body.slice(0, 200)}`);
              // Each operation of the path documents the 405 its path answers.
              for (const op of Object.values(ops)) assert.ok(op.responses['405'], `${path} documents 405`);
              assertPromised(firstOp, path, firstMethod, call, res);
              assert.match(String(res.headers['content-type']), /application\/problem\+json/);
            }
          }
        }
      });

      /** Credentials for a call as `user` on `path`, as the document says they are needed in this mode. */
      function credentials(op: Operation, path: string, user: string): Record<string, string> {
        const admin = path === '/v1/users' || path === '/v1/users/{user}' || path.startsWith('/v1/webhooks');
        if (admin) return { authorization: `Bearer ${ADMIN}` };
        // Open mode: a call the document does not open to anyone (managing a user's tokens)
        // needs the admin token; every other call, none.
        if (mode === 'open') return op.security?.some((r) => Object.keys(r).length === 0) === false ? { authorization: `Bearer ${ADMIN}` } : {};
        return op.security ? { authorization: `Bearer ${tokens.get(user)}` } : {};
      }

      async function validCall(path: string, method: string, op: Operation, ann: string, bob: string): Promise<Call> {
        const messageId = path.includes('{id}') ? await makeMessage(ann, bob) : '0';
        // Calls that remove a user or its tokens act on a user of their own.
        const user = (method === 'delete' && path === '/v1/users/{user}') || path.endsWith('/tokens') ? await makeUser() : ann;
        const fixtures: Record<string, unknown> = {
          user, peer: bob, id: path === '/v1/users' ? `${mode}-new${++counter}` : messageId,
          fromUser: ann, toUser: bob, message: 'hello from the driver', upTo: '0', url: HOOK_URL, events: ['message.created'],
        };
        // A webhook's routes act on a webhook of their own (and, for a retry, on one of its deliveries).
        if (path.startsWith('/v1/webhooks/{id}')) {
          fixtures.id = await makeWebhook();
          if (path.includes('{deliveryId}')) fixtures.deliveryId = await makeDelivery(String(fixtures.id), ann, bob);
        }
        let url = path;
        const query: Record<string, string> = {};
        const headers = credentials(op, path, user);
        for (const p of op.parameters ?? []) {
          if (p.in === 'path') url = url.replace(`{${p.name}}`, encodeURIComponent(String(sample(p.schema, p.name, fixtures))));
          else if (p.required && p.in === 'query') query[p.name] = String(sample(p.schema, p.name, fixtures));
          else if (p.required && p.in === 'header') headers[p.name] = String(sample(p.schema, p.name, fixtures));
        }
        const bodySchema = op.requestBody?.content['application/json']?.schema;
        const body = bodySchema ? sample(bodySchema, 'body', fixtures) : undefined;
        return { method: method.toUpperCase(), path: url, query, headers, ...(body === undefined ? {} : { body }), what: 'valid' };
      }

      async function invalidCalls(path: string, method: string, op: Operation, ann: string, bob: string): Promise<Call[]> {
        const base = await validCall(path, method, op, ann, bob);
        const out: Call[] = [];
        for (const p of op.parameters ?? []) {
          for (const v of violations(p.schema, p.in)) {
            const call: Call = { ...base, query: { ...base.query }, headers: { ...base.headers }, what: `${p.in} ${p.name}: ${v.what}` };
            if (p.in === 'path') {
              const parts = path.split('/').map((seg) => (seg === `{${p.name}}` ? encodeURIComponent(String(v.value)) : seg));
              // The other segments as the valid call had them.
              const validParts = base.path.split('/');
              call.path = parts.map((seg, i) => (seg.startsWith('{') ? validParts[i]! : seg)).join('/');
            } else if (p.in === 'query') call.query[p.name] = String(v.value);
            else call.headers[p.name] = String(v.value);
            out.push(call);
          }
        }
        const bodySchema = op.requestBody?.content['application/json']?.schema;
        if (bodySchema && base.body !== undefined && typeof base.body === 'object') {
          const valid = base.body as Record<string, unknown>;
          out.push({ ...base, body: [], what: 'body: a list, not an object' });
          if (Array.isArray(bodySchema.oneOf)) {
            out.push({ ...base, body: {}, what: 'body: none of the choices' });
            const all = Object.assign({}, ...(bodySchema.oneOf as Schema[]).map((b) => sample(b, 'body', { upTo: '0', ids: [] }))) as object;
            out.push({ ...base, body: all, what: 'body: more than one choice' });
          }
          const props = (bodySchema.properties ?? {}) as Record<string, Schema>;
          for (const key of (bodySchema.required as string[] | undefined) ?? []) {
            const without = { ...valid };
            delete without[key];
            out.push({ ...base, body: without, what: `body: ${key} missing` });
          }
          for (const [key, schema] of Object.entries(props)) {
            for (const v of violations(schema, 'body')) out.push({ ...base, body: { ...valid, [key]: v.value }, what: `body ${key}: ${v.what}` });
          }
        }
        return out;
      }
    });
  }
});
