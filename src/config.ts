/**
 * The only module that reads the environment and command-line flags (house rule 7).
 *
 * Every setting is declared once in {@link SETTINGS}; that one table drives parsing,
 * validation and the `--help` text, so the three cannot drift apart.
 */
import { parseArgs } from 'node:util';
import { isIP } from 'node:net';

/** Which storage backend a database URL selects, with the backend's own location. */
export type StorageLocation =
  | { kind: 'sqlite'; path: string }
  | { kind: 'postgres'; url: string };

/** Validated, frozen settings for one server process. */
export interface Config {
  readonly port: number;
  readonly host: string;
  readonly database: StorageLocation;
  readonly auth: 'open' | 'token' | 'jwt';
  readonly adminToken: string | undefined;
  /** JWT mode: the HMAC secret (HS256/384/512). */
  readonly jwtSecret: string | undefined;
  /** JWT mode: a PEM public key (RS256, ES256 or EdDSA, by the key's type), or a path to one. */
  readonly jwtPublicKey: string | undefined;
  /** JWT mode: a JSON Web Key Set file of public keys. */
  readonly jwksFile: string | undefined;
  readonly jwtIssuer: string | undefined;
  readonly jwtAudience: string | undefined;
  /** Clock skew allowed on `exp`, `nbf` and `iat`. */
  readonly jwtLeewaySeconds: number;
  /** Let webhooks call loopback, private and link-local addresses. */
  readonly webhookAllowPrivate: boolean;
  /** How long delivered webhook deliveries are kept before they are pruned. */
  readonly webhookRetentionHours: number;
  readonly maxMessageBytes: number;
  readonly rateLimit: number;
  readonly durability: 'fsync' | 'relaxed';
  /** Connections each server process keeps to PostgreSQL (unused with SQLite). */
  readonly pgPoolSize: number;
  readonly logLevel: LogLevel;
  readonly allowOpenNetwork: boolean;
  readonly heartbeatSeconds: number;
  readonly streamsPerUser: number;
  readonly streamsTotal: number;
  readonly streamBufferBytes: number;
  readonly corsOrigins: readonly string[];
  readonly trustProxy: boolean | number | readonly string[];
  /** Messages older than this many milliseconds are pruned; undefined keeps them for ever. */
  readonly retentionMs: number | undefined;
  /** Each inbox keeps only its newest this-many messages; undefined keeps them all. */
  readonly inboxLimit: number | undefined;
  /** Seconds a client may take to send a request's headers. */
  readonly headersTimeoutSeconds: number;
  /** Seconds a client may take to send a whole request, headers and body. */
  readonly requestTimeoutSeconds: number;
  /** Seconds an idle keep-alive connection is kept open between requests. */
  readonly keepAliveTimeoutSeconds: number;
  /** Connections held open at once (streams included); more are refused. */
  readonly maxConnections: number;
  /** Seconds a graceful stop waits for in-flight requests before it cuts them off. */
  readonly shutdownGraceSeconds: number;
  /** Host names (besides loopback names and `host`) that open mode answers to. */
  readonly allowedHosts: readonly string[];
}

/** pino's level names. */
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Raised for a setting that cannot be used; its message is meant for a person. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

interface Setting<K extends keyof Config> {
  key: K;
  env?: string;
  flag?: string;
  /** Shown in `--help`; also the value used when nothing is given. */
  default: string;
  help: string;
  parse: (raw: string, source: string) => Config[K];
  /** A flag that takes no value (`--allow-open-network`). */
  boolean?: boolean;
}

function integer(min: number, max: number) {
  return (raw: string, source: string): number => {
    if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`${source} must be a whole number, got "${raw}"`);
    const n = Number(raw);
    if (n < min || n > max) throw new ConfigError(`${source} must be between ${min} and ${max}, got ${n}`);
    return n;
  };
}

function optionalText(raw: string): string | undefined {
  const v = raw.trim();
  return v === '' ? undefined : v;
}

function oneOf<T extends string>(values: readonly T[]) {
  return (raw: string, source: string): T => {
    const v = raw.trim().toLowerCase();
    if (!(values as readonly string[]).includes(v)) {
      throw new ConfigError(`${source} must be one of ${values.join(', ')}, got "${raw}"`);
    }
    return v as T;
  };
}

const DURATION_UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * Parses a duration such as `30d`, `12h`, `90s` (also `m` minutes, `w` weeks) into
 * milliseconds; empty or `off` is undefined (no limit).
 */
export function parseDuration(raw: string, source: string): number | undefined {
  const v = raw.trim().toLowerCase();
  if (v === '' || v === 'off') return undefined;
  const m = /^(\d+)\s*([smhdw])$/.exec(v);
  if (!m) throw new ConfigError(`${source} must be a duration such as 30d, 12h, 90s (or off), got "${raw}"`);
  const ms = Number(m[1]) * DURATION_UNITS[m[2]!]!;
  if (ms < 1000 || !Number.isSafeInteger(ms)) throw new ConfigError(`${source} must be between 1s and a few thousand years, got "${raw}"`);
  return ms;
}

/** Parses `sqlite:<path>` or `postgres://…` into a {@link StorageLocation}. */
export function parseDatabaseUrl(raw: string, source = 'DATABASE_URL'): StorageLocation {
  const value = raw.trim();
  if (/^postgres(ql)?:\/\//i.test(value)) {
    try {
      new URL(value);
    } catch {
      throw new ConfigError(`${source} is not a valid PostgreSQL URL: "${raw}"`);
    }
    return { kind: 'postgres', url: value };
  }
  const m = /^sqlite:(.*)$/i.exec(value);
  if (m) {
    // sqlite:///abs/path and sqlite:./rel/path are both common spellings.
    const path = (m[1] ?? '').replace(/^\/\/(?=\/)/, '');
    if (path === '') throw new ConfigError(`${source} names no SQLite file: "${raw}"`);
    return { kind: 'sqlite', path };
  }
  throw new ConfigError(
    `${source} must start with sqlite: or postgres://, got "${raw}" (e.g. sqlite:./data/postbox.db)`,
  );
}

const SETTINGS: { [K in keyof Config]: Setting<K> } = {
  port: {
    key: 'port', env: 'PORT', flag: 'port', default: '8080',
    help: 'TCP port to listen on (0 picks a free one)',
    parse: integer(0, 65535),
  },
  host: {
    key: 'host', env: 'HOST', flag: 'host', default: 'localhost',
    help: 'address to listen on',
    parse: (raw, source) => {
      const v = raw.trim();
      if (v === '') throw new ConfigError(`${source} must not be empty`);
      return v;
    },
  },
  database: {
    key: 'database', env: 'DATABASE_URL', flag: 'db', default: 'sqlite:./data/postbox.db',
    help: 'storage: sqlite:<file> (embedded) or postgres://user@host/db',
    parse: parseDatabaseUrl,
  },
  auth: {
    key: 'auth', env: 'POSTBOX_AUTH', flag: 'auth', default: 'open',
    help: 'access mode: open (anyone acts as anyone, the seed\'s behaviour), token, or jwt (the app\'s own JWTs, and tokens)',
    parse: oneOf(['open', 'token', 'jwt'] as const),
  },
  adminToken: {
    key: 'adminToken', env: 'POSTBOX_ADMIN_TOKEN', default: '',
    help: 'bearer token that may create and remove users (at least 16 characters)',
    parse: (raw, source) => {
      if (raw === '') return undefined;
      if (raw.length < 16) throw new ConfigError(`${source} must be at least 16 characters`);
      return raw;
    },
  },
  jwtSecret: {
    key: 'jwtSecret', env: 'POSTBOX_JWT_SECRET', default: '',
    help: 'jwt mode: the shared secret of HS256/HS384/HS512 tokens (at least 32 characters)',
    parse: (raw, source) => {
      if (raw === '') return undefined;
      if (raw.length < 32) throw new ConfigError(`${source} must be at least 32 characters (256 bits for HS256)`);
      return raw;
    },
  },
  jwtPublicKey: {
    key: 'jwtPublicKey', env: 'POSTBOX_JWT_PUBLIC_KEY', default: '',
    help: 'jwt mode: the PEM public key (RSA: RS256, P-256: ES256, Ed25519: EdDSA), as text or a path to a .pem file',
    parse: optionalText,
  },
  jwksFile: {
    key: 'jwksFile', env: 'POSTBOX_JWKS_FILE', default: '',
    help: 'jwt mode: a JSON Web Key Set file of public keys (RS256, ES256, EdDSA), chosen by the token\'s kid',
    parse: optionalText,
  },
  jwtIssuer: {
    key: 'jwtIssuer', env: 'POSTBOX_JWT_ISSUER', default: '',
    help: 'jwt mode: the iss a token must carry; empty is not checked',
    parse: optionalText,
  },
  jwtAudience: {
    key: 'jwtAudience', env: 'POSTBOX_JWT_AUDIENCE', default: '',
    help: 'jwt mode: the aud a token must carry; empty is not checked',
    parse: optionalText,
  },
  jwtLeewaySeconds: {
    key: 'jwtLeewaySeconds', env: 'POSTBOX_JWT_LEEWAY_SECONDS', default: '30',
    help: 'jwt mode: clock skew allowed on exp, nbf and iat, in seconds',
    parse: integer(0, 3600),
  },
  webhookAllowPrivate: {
    key: 'webhookAllowPrivate', env: 'POSTBOX_WEBHOOK_ALLOW_PRIVATE', default: 'false',
    help: 'let webhooks call loopback, private and link-local addresses (checked after DNS resolution)',
    parse: (raw, source) => oneOf(['true', 'false'] as const)(raw, source) === 'true',
  },
  webhookRetentionHours: {
    key: 'webhookRetentionHours', env: 'POSTBOX_WEBHOOK_RETENTION_HOURS', default: '168',
    help: 'hours a delivered webhook delivery is kept (for GET /v1/webhooks/{id}/deliveries) before it is pruned',
    parse: integer(1, 24 * 365),
  },
  maxMessageBytes: {
    key: 'maxMessageBytes', env: 'POSTBOX_MAX_MESSAGE_BYTES', default: '65536',
    help: 'largest message text accepted, in UTF-8 bytes',
    parse: integer(1, 16 * 1024 * 1024),
  },
  rateLimit: {
    key: 'rateLimit', env: 'POSTBOX_RATE_LIMIT', default: '6000',
    help: 'requests a minute per token (per client address in open mode); 0 is off',
    parse: integer(0, 100_000_000),
  },
  durability: {
    key: 'durability', env: 'POSTBOX_DURABILITY', default: 'fsync',
    help: 'fsync: answer a send once it is on disk; relaxed: once committed (survives a process crash, not power loss)',
    parse: oneOf(['fsync', 'relaxed'] as const),
  },
  pgPoolSize: {
    key: 'pgPoolSize', env: 'POSTBOX_PG_POOL_SIZE', default: '10',
    help: 'PostgreSQL only: pooled connections per server process for reads and writes, plus one for change notifications ' +
      '(size it so that instances × (this + 1) stays under the server\'s max_connections)',
    parse: integer(1, 1000),
  },
  logLevel: {
    key: 'logLevel', env: 'LOG_LEVEL', flag: 'log-level', default: 'info',
    help: `log level: ${LOG_LEVELS.join(', ')}`,
    parse: oneOf(LOG_LEVELS),
  },
  heartbeatSeconds: {
    key: 'heartbeatSeconds', env: 'POSTBOX_HEARTBEAT_SECONDS', default: '15',
    help: 'seconds between comment heartbeats on an idle stream',
    parse: integer(1, 3600),
  },
  streamsPerUser: {
    key: 'streamsPerUser', env: 'POSTBOX_STREAMS_PER_USER', default: '20',
    help: 'live streams one user may hold open at once (429 past it)',
    parse: integer(1, 100_000),
  },
  streamsTotal: {
    key: 'streamsTotal', env: 'POSTBOX_STREAMS_MAX', default: '20000',
    help: 'live streams this server holds open at once (503 past it)',
    parse: integer(1, 10_000_000),
  },
  streamBufferBytes: {
    key: 'streamBufferBytes', env: 'POSTBOX_STREAM_BUFFER_BYTES', default: '1048576',
    help: 'bytes a stream may have waiting for a client that stopped reading before it is closed',
    parse: integer(4096, 1024 * 1024 * 1024),
  },
  corsOrigins: {
    key: 'corsOrigins', env: 'POSTBOX_CORS_ORIGINS', default: '',
    help: 'origins a browser may call the API from, comma-separated (https://app.example.com), or *; empty is CORS off',
    parse: (raw, source) => {
      const origins = raw.split(',').map((o) => o.trim()).filter(Boolean);
      for (const o of origins) {
        if (o === '*') continue;
        let u: URL;
        try {
          u = new URL(o);
        } catch {
          throw new ConfigError(`${source} has "${o}", which is not an origin like https://app.example.com`);
        }
        if (u.origin !== o.replace(/\/$/, '')) throw new ConfigError(`${source} has "${o}": an origin is scheme://host[:port] only`);
      }
      return origins;
    },
  },
  trustProxy: {
    key: 'trustProxy', env: 'POSTBOX_TRUST_PROXY', default: 'false',
    help: 'behind a reverse proxy: true, a hop count, or the proxy addresses/CIDRs (comma-separated) whose X-Forwarded-For to believe',
    parse: (raw) => {
      const v = raw.trim();
      if (v === 'false' || v === '') return false;
      if (v === 'true') return true;
      if (/^\d+$/.test(v)) return Number(v);
      return v.split(',').map((a) => a.trim()).filter(Boolean);
    },
  },
  retentionMs: {
    key: 'retentionMs', env: 'POSTBOX_RETENTION', default: 'off',
    help: 'remove messages older than this (30d, 12h, 90s; off keeps them for ever), in the background',
    parse: parseDuration,
  },
  inboxLimit: {
    key: 'inboxLimit', env: 'POSTBOX_INBOX_LIMIT', default: 'off',
    help: 'keep only the newest this-many messages of each inbox (off keeps them all), in the background',
    parse: (raw, source) => {
      const v = raw.trim().toLowerCase();
      return v === '' || v === 'off' ? undefined : integer(1, 1_000_000_000)(v, source);
    },
  },
  headersTimeoutSeconds: {
    key: 'headersTimeoutSeconds', env: 'POSTBOX_HEADERS_TIMEOUT_SECONDS', default: '10',
    help: 'seconds a client may take to send a request\'s headers before it is answered 408 and closed',
    parse: integer(1, 3600),
  },
  requestTimeoutSeconds: {
    key: 'requestTimeoutSeconds', env: 'POSTBOX_REQUEST_TIMEOUT_SECONDS', default: '30',
    help: 'seconds a client may take to send a whole request (headers and body) before it is answered 408 and closed',
    parse: integer(1, 3600),
  },
  keepAliveTimeoutSeconds: {
    key: 'keepAliveTimeoutSeconds', env: 'POSTBOX_KEEPALIVE_TIMEOUT_SECONDS', default: '5',
    help: 'seconds an idle keep-alive connection stays open waiting for the next request',
    parse: integer(1, 3600),
  },
  maxConnections: {
    key: 'maxConnections', env: 'POSTBOX_MAX_CONNECTIONS', default: '25000',
    help: 'connections held open at once, live streams included; further connections are refused',
    parse: integer(1, 10_000_000),
  },
  shutdownGraceSeconds: {
    key: 'shutdownGraceSeconds', env: 'POSTBOX_SHUTDOWN_GRACE_SECONDS', default: '10',
    help: 'on SIGTERM/SIGINT, seconds to let in-flight requests finish before cutting them off (storage is closed either way)',
    parse: integer(1, 3600),
  },
  allowedHosts: {
    key: 'allowedHosts', env: 'POSTBOX_ALLOWED_HOSTS', default: '',
    help: 'open mode: host names, comma-separated, that requests may address besides loopback names and HOST ' +
      '(a Host header naming anything else is refused, against DNS rebinding)',
    parse: (raw, source) => {
      const hosts = raw.split(',').map((h) => h.trim().toLowerCase()).filter(Boolean);
      for (const h of hosts) {
        if (/[\s/@]/.test(h)) throw new ConfigError(`${source} has "${h}", which is not a host name`);
      }
      return hosts;
    },
  },
  allowOpenNetwork: {
    key: 'allowOpenNetwork', flag: 'allow-open-network', default: 'false', boolean: true,
    help: 'let open mode listen on a non-loopback address (anyone who can reach it can read every inbox)',
    parse: (raw) => raw === 'true',
  },
};

const ORDER = Object.keys(SETTINGS) as (keyof Config)[];

/** Input to {@link loadConfig}: the process's arguments (after the command) and environment. */
export interface ConfigSource {
  argv?: readonly string[];
  env?: Readonly<Record<string, string | undefined>>;
}

/**
 * Builds the server's settings from flags (first), then environment, then defaults.
 * Throws {@link ConfigError} naming the setting for any value that cannot be used.
 */
export function loadConfig(source: ConfigSource = {}): Config {
  const { values } = readSettings(ORDER, source, false);
  const config = values as unknown as Config;
  checkOpenExposure(config);
  checkJwt(config);
  if (config.headersTimeoutSeconds > config.requestTimeoutSeconds) {
    throw new ConfigError('POSTBOX_HEADERS_TIMEOUT_SECONDS must not be longer than POSTBOX_REQUEST_TIMEOUT_SECONDS');
  }
  return Object.freeze(config);
}

/**
 * Reads `keys` of the settings table from flags, then environment, then defaults. With
 * `positionals`, arguments that are not flags are handed back instead of refused.
 */
function readSettings(
  keys: readonly (keyof Config)[],
  source: ConfigSource,
  positionals: boolean,
  extra: Record<string, { type: 'string' | 'boolean' }> = {},
): { values: Record<string, unknown>; rest: string[]; extras: Record<string, string | boolean | undefined> } {
  const argv = source.argv ?? [];
  const env = source.env ?? {};
  const options: Record<string, { type: 'string' | 'boolean' }> = { ...extra };
  for (const key of keys) {
    const s = SETTINGS[key];
    if (s.flag) options[s.flag] = { type: s.boolean ? 'boolean' : 'string' };
  }
  let flags: Record<string, string | boolean | undefined>;
  let rest: string[];
  try {
    ({ values: flags, positionals: rest } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: positionals }));
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  const values: Record<string, unknown> = {};
  for (const key of keys) {
    const s = SETTINGS[key] as Setting<typeof key>;
    const fromFlag = s.flag ? flags[s.flag] : undefined;
    const fromEnv = s.env ? env[s.env] : undefined;
    if (fromFlag !== undefined) {
      values[key] = s.parse(String(fromFlag), `--${s.flag}`);
    } else if (fromEnv !== undefined && fromEnv !== '') {
      values[key] = s.parse(fromEnv, s.env!);
    } else {
      values[key] = s.parse(s.default, s.env ?? `--${s.flag}`);
    }
  }
  const extras = Object.fromEntries(Object.keys(extra).map((k) => [k, flags[k]]));
  return { values, rest, extras };
}

/** The settings of commands that work on the store itself (users, export, import, migrate). */
export type StoreConfig = Pick<Config, 'database' | 'durability' | 'pgPoolSize'>;

/**
 * Store settings for a command, from the same flags and variables as the server's
 * (`--db`/`DATABASE_URL`, …), with the command's own arguments handed back.
 */
export function loadStoreConfig<F extends Record<string, { type: 'string' | 'boolean' }>>(
  source: ConfigSource,
  flags: F,
): { config: StoreConfig; flags: { [K in keyof F]?: F[K]['type'] extends 'boolean' ? boolean : string }; args: string[] } {
  const { values, rest, extras } = readSettings(['database', 'durability', 'pgPoolSize'], source, true, flags);
  return { config: Object.freeze(values as unknown as StoreConfig), flags: extras as never, args: rest };
}

/** True for an address that only this machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  if (h.startsWith('::ffff:')) return h.slice(7).startsWith('127.');
  return false;
}

function checkOpenExposure(config: Config): void {
  if (config.auth === 'open' && !isLoopback(config.host) && !config.allowOpenNetwork) {
    throw new ConfigError(
      `refusing to listen on ${config.host} in open mode: anyone who can reach it could read and send as any user. ` +
        'Use POSTBOX_AUTH=token, listen on localhost, or pass --allow-open-network if you really mean it.',
    );
  }
}

/** JWT mode needs exactly one source of keys; the JWT settings mean nothing elsewhere. */
function checkJwt(config: Config): void {
  const sources = [config.jwtSecret && 'POSTBOX_JWT_SECRET', config.jwtPublicKey && 'POSTBOX_JWT_PUBLIC_KEY', config.jwksFile && 'POSTBOX_JWKS_FILE']
    .filter(Boolean);
  if (config.auth !== 'jwt') {
    if (sources.length > 0) throw new ConfigError(`${sources[0]} is set but POSTBOX_AUTH is ${config.auth}: set POSTBOX_AUTH=jwt to use it`);
    return;
  }
  if (sources.length === 0) {
    throw new ConfigError('POSTBOX_AUTH=jwt needs a key: POSTBOX_JWT_SECRET, POSTBOX_JWT_PUBLIC_KEY or POSTBOX_JWKS_FILE');
  }
  if (sources.length > 1) throw new ConfigError(`POSTBOX_AUTH=jwt takes one key source, got ${sources.join(' and ')}`);
}

/** The settings table for `postbox serve --help`. */
export function settingsHelp(): string {
  const rows = ORDER.map((key) => {
    const s = SETTINGS[key] as Setting<typeof key>;
    const names = [s.flag ? `--${s.flag}${s.boolean ? '' : ' <value>'}` : '', s.env ?? ''].filter(Boolean).join(', ');
    const def = s.boolean ? '' : s.default === '' ? ' (default: none)' : ` (default: ${s.default})`;
    return `  ${names}\n      ${s.help}${def}`;
  });
  return rows.join('\n');
}

/** Every setting's environment variable and flag, for documentation checks. */
export function settingNames(): { env?: string; flag?: string }[] {
  return ORDER.map((key) => ({ env: SETTINGS[key].env, flag: SETTINGS[key].flag }));
}

/** Where the client commands send their calls, and as whom. */
export interface ClientSettings {
  readonly url: string;
  /** Undefined in open mode, where no token is needed. */
  readonly token: string | undefined;
}

/**
 * The client commands' settings: `--url`/`--token` first, then `POSTBOX_URL`/`POSTBOX_TOKEN`,
 * then `http://localhost:8080` and no token. Throws {@link ConfigError} for a URL that is not
 * http(s), naming where it came from, so a typo is a usage error rather than a failed call.
 */
export function clientSettings(
  env: Readonly<Record<string, string | undefined>>,
  flags: { url?: string | undefined; token?: string | undefined } = {},
): ClientSettings {
  const [rawUrl, urlSource] = flags.url !== undefined ? [flags.url, '--url']
    : env.POSTBOX_URL ? [env.POSTBOX_URL, 'POSTBOX_URL'] : ['http://localhost:8080', 'the default URL'];
  let url: URL;
  try {
    url = new URL(rawUrl.trim());
  } catch {
    throw new ConfigError(`${urlSource} is not a URL: "${rawUrl}" (e.g. http://localhost:8080)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`${urlSource} must be an http:// or https:// URL, got "${rawUrl}"`);
  }
  const token = flags.token ?? env.POSTBOX_TOKEN;
  return Object.freeze({ url: url.href.replace(/\/+$/, ''), token: token === '' ? undefined : token });
}
