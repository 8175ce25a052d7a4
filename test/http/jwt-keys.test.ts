/**
 * JWT mode over real HTTP, one real server (port 0) per key source as the server reads its
 * settings: an HMAC secret, a PEM public key as text or as a file, and a JWKS file. Each
 * accepts its own family's tokens, and refuses with 401 every kind of bad token: expired,
 * not yet valid, issued in the future, wrong issuer or audience, `alg: none`, another
 * algorithm, a tampered payload, a wrong key, no `exp`. Tokens are signed here with jose.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as jose from 'jose';
import { request } from '../helpers/http.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';

const SECRET = 'jwt-keys-test-secret-that-is-long-enough-0123';
const ISS = 'https://app.example';
const AUD = 'postbox';
const LEEWAY = 5;

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const otherRsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const otherEc = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ed = generateKeyPairSync('ed25519');
const otherEd = generateKeyPairSync('ed25519');
const pem = (k: KeyObject) => k.export({ type: 'spki', format: 'pem' }).toString();
const hmac = new TextEncoder().encode(SECRET);
const otherHmac = new TextEncoder().encode(`${SECRET}-but-another-one`);

const nowS = () => Math.floor(Date.now() / 1000);
const good = (sub: string): jose.JWTPayload => ({ sub, iss: ISS, aud: AUD, iat: nowS(), exp: nowS() + 600 });

function sign(claims: jose.JWTPayload, alg: string, key: KeyObject | Uint8Array, kid?: string): Promise<string> {
  return new jose.SignJWT(claims).setProtectedHeader({ alg, ...(kid === undefined ? {} : { kid }) }).sign(key);
}

/** The token with its payload replaced and its signature kept. */
function tampered(token: string, change: jose.JWTPayload): string {
  const [header, payload, signature] = token.split('.');
  const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString('utf8')) as jose.JWTPayload;
  return [header, Buffer.from(JSON.stringify({ ...claims, ...change })).toString('base64url'), signature].join('.');
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** A server, its way of signing a good token, and the tokens of another family or key. */
interface Family {
  name: string;
  env: () => Promise<Record<string, string>>;
  /** Algorithms this server accepts, each with the key (and kid) that signs for it. */
  accepted: [alg: string, key: KeyObject | Uint8Array, kid?: string][];
  /** Tokens of an algorithm outside the configured family. */
  wrongAlgorithm: () => Promise<string[]>;
  /** Tokens of the right algorithm signed with a key the server does not have. */
  wrongKey: () => Promise<string[]>;
}

let dir: string;
before(async () => {
  dir = await tempDir();
});
after(() => rm(dir, { recursive: true, force: true }));

const families: Family[] = [
  {
    name: 'HS256/HS384/HS512 with POSTBOX_JWT_SECRET',
    env: () => Promise.resolve({ POSTBOX_JWT_SECRET: SECRET }),
    accepted: [['HS256', hmac], ['HS384', hmac], ['HS512', hmac]],
    wrongAlgorithm: async () => [await sign(good('k-x'), 'RS256', rsa.privateKey), await sign(good('k-x'), 'EdDSA', ed.privateKey)],
    wrongKey: async () => [await sign(good('k-x'), 'HS256', otherHmac)],
  },
  {
    name: 'RS256 with POSTBOX_JWT_PUBLIC_KEY as PEM text',
    env: () => Promise.resolve({ POSTBOX_JWT_PUBLIC_KEY: pem(rsa.publicKey) }),
    accepted: [['RS256', rsa.privateKey]],
    // The classic confusion: an HS256 token "signed" with the public key the server holds.
    wrongAlgorithm: async () => [
      await sign(good('k-x'), 'HS256', new TextEncoder().encode(pem(rsa.publicKey))),
      await sign(good('k-x'), 'ES256', ec.privateKey),
    ],
    wrongKey: async () => [await sign(good('k-x'), 'RS256', otherRsa.privateKey)],
  },
  {
    name: 'ES256 with POSTBOX_JWT_PUBLIC_KEY as a PEM file',
    env: async () => {
      const file = join(dir, 'ec.pem');
      await writeFile(file, pem(ec.publicKey));
      return { POSTBOX_JWT_PUBLIC_KEY: file };
    },
    accepted: [['ES256', ec.privateKey]],
    wrongAlgorithm: async () => [await sign(good('k-x'), 'RS256', rsa.privateKey), await sign(good('k-x'), 'HS256', hmac)],
    wrongKey: async () => [await sign(good('k-x'), 'ES256', otherEc.privateKey)],
  },
  {
    name: 'EdDSA with POSTBOX_JWT_PUBLIC_KEY as PEM text',
    env: () => Promise.resolve({ POSTBOX_JWT_PUBLIC_KEY: pem(ed.publicKey) }),
    accepted: [['EdDSA', ed.privateKey]],
    wrongAlgorithm: async () => [await sign(good('k-x'), 'ES256', ec.privateKey), await sign(good('k-x'), 'RS256', rsa.privateKey)],
    wrongKey: async () => [await sign(good('k-x'), 'EdDSA', otherEd.privateKey)],
  },
  {
    name: 'RS256, ES256 and EdDSA with POSTBOX_JWKS_FILE',
    env: async () => {
      const file = join(dir, 'jwks.json');
      const keys = await Promise.all([
        jose.exportJWK(rsa.publicKey).then((k) => ({ ...k, kid: 'rsa-1', alg: 'RS256' })),
        jose.exportJWK(ec.publicKey).then((k) => ({ ...k, kid: 'ec-1', alg: 'ES256' })),
        jose.exportJWK(ed.publicKey).then((k) => ({ ...k, kid: 'ed-1', alg: 'EdDSA' })),
      ]);
      await writeFile(file, JSON.stringify({ keys }));
      return { POSTBOX_JWKS_FILE: file };
    },
    accepted: [['RS256', rsa.privateKey, 'rsa-1'], ['ES256', ec.privateKey, 'ec-1'], ['EdDSA', ed.privateKey, 'ed-1']],
    wrongAlgorithm: async () => [await sign(good('k-x'), 'HS256', hmac, 'rsa-1')],
    wrongKey: async () => [
      await sign(good('k-x'), 'RS256', otherRsa.privateKey, 'rsa-1'),
      await sign(good('k-x'), 'EdDSA', otherEd.privateKey, 'ed-2'),
    ],
  },
];

for (const family of families) {
  describe(`JWT mode, ${family.name}`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer({
        POSTBOX_AUTH: 'jwt', POSTBOX_JWT_ISSUER: ISS, POSTBOX_JWT_AUDIENCE: AUD,
        POSTBOX_JWT_LEEWAY_SECONDS: String(LEEWAY), ...(await family.env()),
      });
    });
    after(() => server.stop());

    const inboxOf = (sub: string, token: string) => request(server.url, `/v1/users/${sub}/messages`, { headers: bearer(token) });

    it('accepts its own family\'s tokens', async () => {
      for (const [alg, key, kid] of family.accepted) {
        const res = await inboxOf('k-ann', await sign(good('k-ann'), alg, key, kid));
        assert.equal(res.status, 200, `${alg}: ${res.text}`);
      }
    });

    it('refuses every kind of bad token with 401', async () => {
      const [alg, key, kid] = family.accepted[0]!;
      const t = nowS();
      const valid = await sign(good('k-ann'), alg, key, kid);
      const noExp = good('k-ann');
      delete noExp.exp;
      const cases: [string, string, RegExp][] = [
        ['expired beyond the leeway', await sign({ ...good('k-ann'), exp: t - LEEWAY - 10 }, alg, key, kid), /token expired/],
        ['not yet valid beyond the leeway', await sign({ ...good('k-ann'), nbf: t + LEEWAY + 60 }, alg, key, kid), /not yet valid/],
        ['issued in the future beyond the leeway', await sign({ ...good('k-ann'), iat: t + LEEWAY + 60 }, alg, key, kid), /issued in the future|iat/],
        ['wrong issuer', await sign({ ...good('k-ann'), iss: 'https://evil.example' }, alg, key, kid), /wrong issuer/],
        ['wrong audience', await sign({ ...good('k-ann'), aud: 'someone-else' }, alg, key, kid), /wrong audience/],
        ['alg none', new jose.UnsecuredJWT(good('k-ann')).encode(), /algorithm not allowed|malformed/],
        ['tampered payload', tampered(valid, { sub: 'k-bob' }), /bad signature/],
        ['missing exp', await sign(noExp, alg, key, kid), /exp claim is required/],
        ...(await family.wrongAlgorithm()).map((token): [string, string, RegExp] => ['another algorithm', token, /algorithm not allowed|no matching key/]),
        ...(await family.wrongKey()).map((token): [string, string, RegExp] => ['a wrong key', token, /bad signature|no matching key/]),
      ];
      for (const [what, token, why] of cases) {
        const sub = what === 'tampered payload' ? 'k-bob' : 'k-ann';
        const res = await inboxOf(sub, token);
        assert.equal(res.status, 401, `${what}: ${res.text}`);
        assert.match(res.json<{ detail: string }>().detail, why, what);
        assert.match(String(res.headers['www-authenticate']), /error="invalid_token"/, what);
      }
    });
  });
}

describe('JWT mode, key material the server cannot use', () => {
  it('refuses to start on a key file it cannot read, naming the setting', async () => {
    await assert.rejects(
      startTestServer({ POSTBOX_AUTH: 'jwt', POSTBOX_JWT_PUBLIC_KEY: join(dir, 'no-such-key.pem') }, { dir }),
      /POSTBOX_JWT_PUBLIC_KEY .*no-such-key\.pem cannot be read/,
    );
    await assert.rejects(
      startTestServer({ POSTBOX_AUTH: 'jwt', POSTBOX_JWKS_FILE: join(dir, 'no-such-jwks.json') }, { dir }),
      /POSTBOX_JWKS_FILE .*no-such-jwks\.json cannot be read/,
    );
  });
});
