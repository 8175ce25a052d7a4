/**
 * The JWT verifier against tokens signed here with jose: every algorithm family accepted,
 * and every kind of bad token refused with a reason. The clock is injected, so expiry and
 * not-before are tested without waiting.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import * as jose from 'jose';
import { loadJwtVerifier, type JwtOptions } from '../../src/domain/jwt.js';
import { AppError } from '../../src/errors.js';
import { tempDir } from '../helpers/server.js';

const SECRET = 'a-shared-secret-of-at-least-32-characters!';
const NOW = Date.UTC(2030, 0, 1);
const T = Math.floor(NOW / 1000);

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ed = generateKeyPairSync('ed25519');
const otherEd = generateKeyPairSync('ed25519');
const pem = (k: KeyObject) => k.export({ type: 'spki', format: 'pem' }).toString();

function sign(claims: jose.JWTPayload, alg: string, key: KeyObject | Uint8Array, header: Partial<jose.JWTHeaderParameters> = {}): Promise<string> {
  return new jose.SignJWT(claims).setProtectedHeader({ alg, ...header }).sign(key);
}
const hmac = new TextEncoder().encode(SECRET);
const base = { sub: 'ann', exp: T + 600, iat: T };

function verifier(options: Partial<JwtOptions>) {
  return loadJwtVerifier({ leewaySeconds: 30, now: () => NOW, ...options });
}

async function refusedWith(promise: Promise<unknown>, reason: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof AppError, String(err));
    assert.equal(err.status, 401);
    assert.match(err.message, reason);
    assert.match(err.headers['WWW-Authenticate'] ?? '', /^Bearer realm="postbox", error="invalid_token"/);
    return true;
  });
}

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('JWT verification', () => {
  it('accepts HS256, HS384 and HS512 with the secret', async () => {
    const v = await verifier({ secret: SECRET });
    for (const alg of ['HS256', 'HS384', 'HS512']) {
      const actor = await v.verify(await sign(base, alg, hmac));
      assert.deepEqual(actor, { kind: 'user', id: 'ann', scopes: ['full'], expiresAt: (T + 600 + 30) * 1000 },
        'the stream ends when the token stops being accepted: exp plus the leeway');
    }
  });

  it('accepts RS256, ES256 and EdDSA with a PEM public key (text or file)', async () => {
    const dir = await tempDir();
    dirs.push(dir);
    const edFile = join(dir, 'ed.pem');
    await writeFile(edFile, pem(ed.publicKey));
    const cases: [string, KeyObject, string][] = [
      ['RS256', rsa.privateKey, pem(rsa.publicKey)],
      ['ES256', ec.privateKey, pem(ec.publicKey)],
      ['EdDSA', ed.privateKey, edFile],
    ];
    for (const [alg, priv, publicKey] of cases) {
      const v = await verifier({ publicKey });
      assert.equal((await v.verify(await sign(base, alg, priv))).id, 'ann', alg);
    }
  });

  it('accepts each asymmetric family from a JWKS file, choosing the key by kid', async () => {
    const dir = await tempDir();
    dirs.push(dir);
    const file = join(dir, 'jwks.json');
    const keys = await Promise.all([
      ['r', rsa.publicKey], ['e', ec.publicKey], ['d', ed.publicKey],
    ].map(async ([kid, k]) => ({ ...(await jose.exportJWK(k as KeyObject)), kid })));
    await writeFile(file, JSON.stringify({ keys }));
    const v = await verifier({ jwksFile: file });
    assert.equal((await v.verify(await sign(base, 'RS256', rsa.privateKey, { kid: 'r' }))).id, 'ann');
    assert.equal((await v.verify(await sign(base, 'ES256', ec.privateKey, { kid: 'e' }))).id, 'ann');
    assert.equal((await v.verify(await sign(base, 'EdDSA', ed.privateKey, { kid: 'd' }))).id, 'ann');
    await refusedWith(v.verify(await sign(base, 'EdDSA', otherEd.privateKey, { kid: 'd' })), /bad signature/);
    await refusedWith(v.verify(await sign(base, 'HS256', hmac, { kid: 'd' })), /algorithm not allowed/);
  });

  it('refuses expired, not-yet-valid and future-issued tokens, beyond the leeway only', async () => {
    const v = await verifier({ secret: SECRET });
    await refusedWith(v.verify(await sign({ ...base, exp: T - 31 }, 'HS256', hmac)), /token expired/);
    await refusedWith(v.verify(await sign({ ...base, nbf: T + 31 }, 'HS256', hmac)), /not yet valid/);
    await refusedWith(v.verify(await sign({ ...base, iat: T + 31 }, 'HS256', hmac)), /issued in the future/);
    // Within the 30 s leeway, each is accepted.
    await v.verify(await sign({ ...base, exp: T - 29, nbf: T + 29, iat: T + 29 }, 'HS256', hmac));
    const strict = await verifier({ secret: SECRET, leewaySeconds: 0 });
    await refusedWith(strict.verify(await sign({ ...base, exp: T - 1 }, 'HS256', hmac)), /token expired/);
  });

  it('requires exp and sub, and a sub that is a valid user id', async () => {
    const v = await verifier({ secret: SECRET });
    await refusedWith(v.verify(await sign({ sub: 'ann' }, 'HS256', hmac)), /exp claim is required/);
    await refusedWith(v.verify(await sign({ exp: T + 60 }, 'HS256', hmac)), /sub claim is required/);
    await refusedWith(v.verify(await sign({ ...base, sub: 'a/b' }, 'HS256', hmac)), /sub is not a valid user id: it must not contain "\/"/);
  });

  it('takes sub exactly as it is: a compatibility form or a non-NFC id is refused, never folded', async () => {
    const v = await verifier({ secret: SECRET });
    await refusedWith(v.verify(await sign({ ...base, sub: 'Ａｌｉｃｅ' }, 'HS256', hmac)), /compatibility characters.*use "Alice"/);
    await refusedWith(v.verify(await sign({ ...base, sub: 'cafe\u0301' }, 'HS256', hmac)), /not in Unicode NFC/);
    await refusedWith(v.verify(await sign({ ...base, sub: 'A\u3164' }, 'HS256', hmac)), /found U\+3164/);
    await assert.rejects(v.verify(await sign({ ...base, sub: '山田\uFE0F' }, 'HS256', hmac)), (err: AppError) => {
      assert.match(err.headers['WWW-Authenticate']!, /^Bearer realm="postbox", error="invalid_token", error_description="[\x20-\x21\x23-\x7E]*"$/,
        'a quoted string of printable ASCII, whatever the id holds');
      return true;
    });
    assert.equal((await v.verify(await sign({ ...base, sub: '山田 太郎' }, 'HS256', hmac))).id, '山田 太郎');
  });

  it('checks iss and aud when configured', async () => {
    const v = await verifier({ secret: SECRET, issuer: 'https://app.example', audience: 'postbox' });
    await v.verify(await sign({ ...base, iss: 'https://app.example', aud: 'postbox' }, 'HS256', hmac));
    await refusedWith(v.verify(await sign({ ...base, iss: 'https://evil.example', aud: 'postbox' }, 'HS256', hmac)), /wrong issuer/);
    await refusedWith(v.verify(await sign({ ...base, iss: 'https://app.example', aud: 'other' }, 'HS256', hmac)), /wrong audience/);
    await refusedWith(v.verify(await sign(base, 'HS256', hmac)), /iss claim is required|wrong issuer/);
  });

  it('refuses alg none, another family, a tampered token and the wrong key', async () => {
    const hs = await verifier({ secret: SECRET });
    const unsecured = new jose.UnsecuredJWT(base).encode();
    await refusedWith(hs.verify(unsecured), /algorithm not allowed|malformed/);
    await refusedWith(hs.verify(await sign(base, 'RS256', rsa.privateKey)), /algorithm not allowed/);
    const good = await sign(base, 'HS256', hmac);
    const [h, p, s] = good.split('.') as [string, string, string];
    const forged = Buffer.from(JSON.stringify({ ...base, sub: 'bob' })).toString('base64url');
    await refusedWith(hs.verify(`${h}.${forged}.${s}`), /bad signature/);
    await refusedWith(hs.verify(`${h}.${p}.${s.slice(0, -2)}AA`), /bad signature|malformed/);
    await refusedWith(hs.verify(await sign(base, 'HS256', new TextEncoder().encode(`${SECRET}-not-this-one`))), /bad signature/);

    const rs = await verifier({ publicKey: pem(rsa.publicKey) });
    // Algorithm confusion: an HS256 token whose "secret" is the public key's PEM text.
    await refusedWith(rs.verify(await sign(base, 'HS256', new TextEncoder().encode(pem(rsa.publicKey)))), /algorithm not allowed/);
    await refusedWith(rs.verify(await sign(base, 'ES256', ec.privateKey)), /algorithm not allowed/);
    await refusedWith(rs.verify(await sign(base, 'RS256', generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey)), /bad signature/);
  });

  it('narrows a token by its scope claim, ignoring other applications\' scopes', async () => {
    const v = await verifier({ secret: SECRET });
    assert.deepEqual((await v.verify(await sign({ ...base, scope: 'openid send' }, 'HS256', hmac))).scopes, ['send']);
    assert.deepEqual((await v.verify(await sign({ ...base, scope: ['read', 'send'] }, 'HS256', hmac))).scopes, ['send', 'read']);
    // A claim naming only other applications' scopes says nothing about Postbox: full, as without one.
    assert.deepEqual((await v.verify(await sign({ ...base, scope: 'profile' }, 'HS256', hmac))).scopes, ['full']);
    assert.deepEqual((await v.verify(await sign({ ...base, scope: 'openid profile email' }, 'HS256', hmac))).scopes, ['full']);
    assert.deepEqual((await v.verify(await sign({ ...base, scope: [] }, 'HS256', hmac))).scopes, ['full']);
    assert.deepEqual((await v.verify(await sign({ ...base, scope: '' }, 'HS256', hmac))).scopes, ['full']);
    assert.deepEqual((await v.verify(await sign(base, 'HS256', hmac))).scopes, ['full']);
    await refusedWith(v.verify(await sign({ ...base, scope: 42 }, 'HS256', hmac)), /scope claim/);
  });
});
