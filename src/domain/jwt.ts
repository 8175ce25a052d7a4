/**
 * The application's own JWTs as Postbox credentials (`POSTBOX_AUTH=jwt`).
 *
 * Verification is `jose`'s, never ours: we only choose what it accepts. The accepted
 * algorithms are the configured key's family and nothing else (an HMAC secret accepts
 * HS256/384/512; an RSA key RS256/384/512; an EC key the ES algorithm of its curve; an
 * Ed25519 key EdDSA), so `alg: none` and algorithm confusion (an HS256 token "signed" with
 * the public key) are refused by construction. `exp` is required; `sub` is the user.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import * as jose from 'jose';
import { AppError } from '../errors.js';
import { toScopes, type UserActor } from './access.js';
import { exactIdProblem } from './rules.js';

/** Where the verifier's keys come from, and what it checks beyond the signature. */
export interface JwtOptions {
  secret?: string | undefined;
  /** PEM text, or a path to a PEM file. */
  publicKey?: string | undefined;
  jwksFile?: string | undefined;
  issuer?: string | undefined;
  audience?: string | undefined;
  leewaySeconds: number;
  /** The clock, in epoch milliseconds; tests move it instead of waiting. */
  now?: () => number;
}

type KeyInput = Uint8Array | KeyObject | jose.JWTVerifyGetKey;

const HMAC = ['HS256', 'HS384', 'HS512'];
const ASYMMETRIC = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

/** The algorithms a public key may verify: its own family only. */
function algorithmsFor(key: KeyObject): string[] {
  const type = key.asymmetricKeyType;
  if (type === 'rsa') return ['RS256', 'RS384', 'RS512'];
  if (type === 'ed25519') return ['EdDSA', 'Ed25519'];
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    const alg = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' }[curve ?? ''];
    if (alg) return [alg];
  }
  throw new Error(`POSTBOX_JWT_PUBLIC_KEY is a ${type ?? 'unknown'} key; use RSA, EC (P-256/384/521) or Ed25519`);
}

/** A 401 for a token that is not accepted; `why` goes in the detail and in WWW-Authenticate. */
export function refused(why: string): AppError {
  // A header value is a quoted string of printable ASCII (RFC 6750): a user id in `why` may hold neither.
  const description = why.replace(/["\\]/g, "'").replace(/[^\x20-\x7E]/g, '?');
  return new AppError('unauthorized', `the JWT is not accepted: ${why}`, {
    headers: { 'WWW-Authenticate': `Bearer realm="postbox", error="invalid_token", error_description="${description}"` },
  });
}

/** What jose's error means, said for a person (and, for expiry, for a client to act on). */
function reasonOf(err: unknown): string {
  if (err instanceof jose.errors.JWTExpired) return 'token expired';
  if (err instanceof jose.errors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf') return 'token not yet valid (nbf)';
    if (err.claim === 'iss') return 'wrong issuer (iss)';
    if (err.claim === 'aud') return 'wrong audience (aud)';
    if (err.reason === 'missing') return `the ${err.claim} claim is required`;
    return `the ${err.claim} claim is not valid`;
  }
  if (err instanceof jose.errors.JOSEAlgNotAllowed || err instanceof jose.errors.JOSENotSupported) return 'algorithm not allowed';
  if (err instanceof jose.errors.JWSSignatureVerificationFailed) return 'bad signature';
  if (err instanceof jose.errors.JWKSNoMatchingKey || err instanceof jose.errors.JWKSMultipleMatchingKeys) return 'no matching key';
  return 'malformed token';
}

/** Verifies JWTs into actors. Make one with {@link loadJwtVerifier}. */
export class JwtVerifier {
  private readonly now: () => number;

  constructor(private readonly key: KeyInput, private readonly algorithms: string[], private readonly options: JwtOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Whether a bearer token has a JWT's shape (three base64url parts), as opposed to a Postbox token. */
  static looksLikeJwt(token: string): boolean {
    return /^[\w-]+\.[\w-]*\.[\w-]*$/.test(token);
  }

  /** The user a JWT acts as, with its scopes and expiry; throws a 401 saying why it is refused. */
  async verify(token: string): Promise<UserActor> {
    const now = this.now();
    let payload: jose.JWTPayload;
    try {
      const options: jose.JWTVerifyOptions = {
        algorithms: this.algorithms,
        clockTolerance: this.options.leewaySeconds,
        currentDate: new Date(now),
        requiredClaims: ['exp', 'sub'],
        ...(this.options.issuer === undefined ? {} : { issuer: this.options.issuer }),
        ...(this.options.audience === undefined ? {} : { audience: this.options.audience }),
      };
      // Three overloads of one call; the key's type picks which.
      ({ payload } = typeof this.key === 'function'
        ? await jose.jwtVerify(token, this.key, options)
        : await jose.jwtVerify(token, this.key, options));
    } catch (err) {
      throw refused(reasonOf(err));
    }
    // jose checks iat only against a maximum age; a token issued in the future is refused here.
    if (payload.iat !== undefined && payload.iat * 1000 > now + this.options.leewaySeconds * 1000) {
      throw refused('token issued in the future (iat)');
    }
    const sub = payload.sub ?? '';
    const problem = exactIdProblem(sub);
    if (problem !== null) throw refused(`sub is not a valid user id: it ${problem}`);
    let scopes;
    try {
      scopes = payload.scope === undefined ? [] : toScopes(payload.scope, 'scope', false);
    } catch {
      throw refused('the scope claim must be a space-separated string or a list');
    }
    // An identity provider's access token carries its own scopes ("openid profile email"):
    // one that names none of ours says nothing about Postbox, so it is full, as without the
    // claim. Naming any of ours narrows the token to those.
    if (scopes.length === 0) scopes = ['full' as const];
    // The stream ends when this verifier would stop accepting the token, not at plain exp: a
    // token inside the leeway would otherwise be accepted and ended at once, over and over.
    return { kind: 'user', id: sub, scopes, expiresAt: (payload.exp! + this.options.leewaySeconds) * 1000 };
  }
}

/** A key file's text; an error naming the setting, so a bad path is found at startup. */
async function readKeyFile(setting: string, path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new Error(`${setting} ${path} cannot be read: ${(err as Error).message}`, { cause: err });
  }
}

/** Reads the configured key material (files included) and makes the verifier. */
export async function loadJwtVerifier(options: JwtOptions): Promise<JwtVerifier> {
  if (options.secret !== undefined) {
    return new JwtVerifier(new TextEncoder().encode(options.secret), HMAC, options);
  }
  if (options.publicKey !== undefined) {
    const pem = options.publicKey.startsWith('-----BEGIN') ? options.publicKey : await readKeyFile('POSTBOX_JWT_PUBLIC_KEY', options.publicKey);
    let key: KeyObject;
    try {
      key = createPublicKey(pem);
    } catch (err) {
      throw new Error(`POSTBOX_JWT_PUBLIC_KEY is not a PEM public key: ${(err as Error).message}`, { cause: err });
    }
    return new JwtVerifier(key, algorithmsFor(key), options);
  }
  if (options.jwksFile !== undefined) {
    let jwks: jose.JSONWebKeySet;
    try {
      jwks = JSON.parse(await readKeyFile('POSTBOX_JWKS_FILE', options.jwksFile)) as jose.JSONWebKeySet;
    } catch (err) {
      if (!(err instanceof SyntaxError)) throw err;
      throw new Error(`POSTBOX_JWKS_FILE ${options.jwksFile} is not JSON: ${err.message}`, { cause: err });
    }
    if (!Array.isArray(jwks.keys) || jwks.keys.length === 0) throw new Error(`POSTBOX_JWKS_FILE ${options.jwksFile} holds no keys`);
    // A symmetric key in a public key set would let anyone who can read the set sign tokens.
    if (jwks.keys.some((k) => k.kty === 'oct')) throw new Error(`POSTBOX_JWKS_FILE ${options.jwksFile} holds a symmetric (oct) key; use POSTBOX_JWT_SECRET for HMAC`);
    return new JwtVerifier(jose.createLocalJWKSet(jwks), ASYMMETRIC, options);
  }
  throw new Error('no JWT key configured');
}
