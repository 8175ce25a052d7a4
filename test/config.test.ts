/**
 * Settings from flags, environment and defaults, and the clear refusals.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { clientSettings, ConfigError, isLoopback, loadConfig, parseDatabaseUrl, settingsHelp } from '../src/config.js';

describe('config', () => {
  it('defaults to the contract\'s settings', () => {
    const c = loadConfig({});
    assert.equal(c.port, 8080);
    assert.equal(c.host, 'localhost');
    assert.deepEqual(c.database, { kind: 'sqlite', path: './data/postbox.db' });
    assert.equal(c.auth, 'open');
    assert.equal(c.adminToken, undefined);
    assert.equal(c.maxMessageBytes, 65536);
    assert.equal(c.rateLimit, 6000);
    assert.equal(c.durability, 'fsync');
    assert.equal(c.pgPoolSize, 10);
    assert.equal(c.logLevel, 'info');
    assert.ok(Object.isFrozen(c));
  });

  it('reads the environment, and flags win over it', () => {
    const c = loadConfig({
      env: { PORT: '9000', HOST: '127.0.0.1', DATABASE_URL: 'sqlite:/tmp/x.db', POSTBOX_DURABILITY: 'relaxed', LOG_LEVEL: 'warn' },
      argv: ['--port', '9001', '--log-level', 'debug'],
    });
    assert.equal(c.port, 9001);
    assert.equal(c.host, '127.0.0.1');
    assert.deepEqual(c.database, { kind: 'sqlite', path: '/tmp/x.db' });
    assert.equal(c.durability, 'relaxed');
    assert.equal(c.logLevel, 'debug');
  });

  it('names the setting that is wrong', () => {
    const bad: [Record<string, string>, string[], RegExp][] = [
      [{ PORT: 'eighty' }, [], /PORT must be a whole number/],
      [{ PORT: '70000' }, [], /PORT must be between 0 and 65535/],
      [{}, ['--port=-1'], /--port must be a whole number/],
      [{ POSTBOX_AUTH: 'maybe' }, [], /POSTBOX_AUTH must be one of open, token/],
      [{ POSTBOX_DURABILITY: 'yolo' }, [], /POSTBOX_DURABILITY must be one of fsync, relaxed/],
      [{ DATABASE_URL: 'mysql://x' }, [], /DATABASE_URL must start with sqlite: or postgres:\/\//],
      [{ POSTBOX_MAX_MESSAGE_BYTES: '0' }, [], /POSTBOX_MAX_MESSAGE_BYTES must be between/],
      [{ POSTBOX_ADMIN_TOKEN: 'short' }, [], /POSTBOX_ADMIN_TOKEN must be at least 16 characters/],
      [{ POSTBOX_PG_POOL_SIZE: '0' }, [], /POSTBOX_PG_POOL_SIZE must be between 1 and 1000/],
      [{ POSTBOX_PG_POOL_SIZE: 'lots' }, [], /POSTBOX_PG_POOL_SIZE must be a whole number/],
      [{}, ['--no-such-flag'], /Unknown option '--no-such-flag'/],
      [{ POSTBOX_RETENTION: '30 days' }, [], /POSTBOX_RETENTION must be a duration such as 30d, 12h, 90s/],
      [{ POSTBOX_RETENTION: '0s' }, [], /POSTBOX_RETENTION must be between 1s/],
      [{ POSTBOX_INBOX_LIMIT: '0' }, [], /POSTBOX_INBOX_LIMIT must be between 1 and/],
      [{ POSTBOX_INBOX_LIMIT: 'ten' }, [], /POSTBOX_INBOX_LIMIT must be a whole number/],
    ];
    for (const [env, argv, message] of bad) {
      assert.throws(() => loadConfig({ env, argv }), (err: unknown) => err instanceof ConfigError && message.test(err.message));
    }
  });

  it('refuses JWT settings that cannot work, naming them', () => {
    const secret = 'a-jwt-secret-of-at-least-32-characters';
    const bad: [Record<string, string>, RegExp][] = [
      [{ POSTBOX_AUTH: 'jwt' }, /POSTBOX_AUTH=jwt needs a key: POSTBOX_JWT_SECRET, POSTBOX_JWT_PUBLIC_KEY or POSTBOX_JWKS_FILE/],
      [{ POSTBOX_AUTH: 'jwt', POSTBOX_JWT_SECRET: secret, POSTBOX_JWKS_FILE: '/keys.json' },
        /POSTBOX_AUTH=jwt takes one key source, got POSTBOX_JWT_SECRET and POSTBOX_JWKS_FILE/],
      [{ POSTBOX_AUTH: 'jwt', POSTBOX_JWT_PUBLIC_KEY: '/key.pem', POSTBOX_JWKS_FILE: '/keys.json' },
        /takes one key source, got POSTBOX_JWT_PUBLIC_KEY and POSTBOX_JWKS_FILE/],
      [{ POSTBOX_AUTH: 'jwt', POSTBOX_JWT_SECRET: 'x'.repeat(31) }, /POSTBOX_JWT_SECRET must be at least 32 characters/],
      [{ POSTBOX_AUTH: 'jwt', POSTBOX_JWT_SECRET: secret, POSTBOX_JWT_LEEWAY_SECONDS: '-1' },
        /POSTBOX_JWT_LEEWAY_SECONDS must be a whole number, got "-1"/],
      [{ POSTBOX_AUTH: 'jwt', POSTBOX_JWT_SECRET: secret, POSTBOX_JWT_LEEWAY_SECONDS: '3601' },
        /POSTBOX_JWT_LEEWAY_SECONDS must be between 0 and 3600/],
      [{ POSTBOX_AUTH: 'token', POSTBOX_JWT_SECRET: secret }, /POSTBOX_JWT_SECRET is set but POSTBOX_AUTH is token/],
    ];
    for (const [env, message] of bad) {
      assert.throws(() => loadConfig({ env }), (err: unknown) => err instanceof ConfigError && message.test(err.message), message.source);
    }
    const c = loadConfig({ env: { POSTBOX_AUTH: 'jwt', POSTBOX_JWT_SECRET: 'y'.repeat(32), POSTBOX_JWT_LEEWAY_SECONDS: '0' } });
    assert.equal(c.jwtSecret, 'y'.repeat(32));
    assert.equal(c.jwtLeewaySeconds, 0);
    assert.equal(loadConfig({ env: { POSTBOX_AUTH: 'jwt', POSTBOX_JWKS_FILE: '/keys.json' } }).jwtLeewaySeconds, 30);
    // A key file is read when the server starts, not here: its errors are the server's
    // (test/http/jwt-keys.test.ts, "refuses to start on a key file it cannot read").
  });

  it('refuses open mode on a non-loopback address unless told to allow it', () => {
    assert.throws(() => loadConfig({ env: { HOST: '0.0.0.0' } }), /refusing to listen on 0\.0\.0\.0 in open mode/);
    assert.equal(loadConfig({ env: { HOST: '0.0.0.0' }, argv: ['--allow-open-network'] }).host, '0.0.0.0');
    assert.equal(loadConfig({ env: { HOST: '0.0.0.0', POSTBOX_AUTH: 'token' } }).auth, 'token');
    for (const h of ['localhost', '127.0.0.1', '127.8.9.10', '::1', '[::1]']) assert.ok(isLoopback(h), h);
    for (const h of ['0.0.0.0', '::', '192.168.1.2', 'example.com']) assert.ok(!isLoopback(h), h);
  });

  it('keeps every message by default, and reads retention as a duration and the inbox limit as a count', () => {
    assert.equal(loadConfig({}).retentionMs, undefined);
    assert.equal(loadConfig({}).inboxLimit, undefined);
    assert.equal(loadConfig({ env: { POSTBOX_RETENTION: 'off', POSTBOX_INBOX_LIMIT: 'off' } }).retentionMs, undefined);
    assert.equal(loadConfig({ env: { POSTBOX_RETENTION: '30d' } }).retentionMs, 30 * 86_400_000);
    assert.equal(loadConfig({ env: { POSTBOX_RETENTION: '12h' } }).retentionMs, 12 * 3_600_000);
    assert.equal(loadConfig({ env: { POSTBOX_RETENTION: '90s' } }).retentionMs, 90_000);
    assert.equal(loadConfig({ env: { POSTBOX_RETENTION: '2W' } }).retentionMs, 14 * 86_400_000);
    assert.equal(loadConfig({ env: { POSTBOX_INBOX_LIMIT: '500' } }).inboxLimit, 500);
  });

  it('parses the database URL spellings', () => {
    assert.deepEqual(parseDatabaseUrl('sqlite:///var/lib/postbox.db'), { kind: 'sqlite', path: '/var/lib/postbox.db' });
    assert.deepEqual(parseDatabaseUrl('sqlite:rel.db'), { kind: 'sqlite', path: 'rel.db' });
    assert.deepEqual(parseDatabaseUrl('postgres://u@h:5432/db'), { kind: 'postgres', url: 'postgres://u@h:5432/db' });
    assert.deepEqual(parseDatabaseUrl('postgresql://h/db'), { kind: 'postgres', url: 'postgresql://h/db' });
  });

  it('documents every setting in the help text', () => {
    const help = settingsHelp();
    for (const name of ['--port', 'PORT', '--host', 'HOST', '--db', 'DATABASE_URL', '--auth', 'POSTBOX_AUTH',
      'POSTBOX_ADMIN_TOKEN', 'POSTBOX_MAX_MESSAGE_BYTES', 'POSTBOX_RATE_LIMIT', 'POSTBOX_DURABILITY', 'POSTBOX_PG_POOL_SIZE', '--log-level',
      'LOG_LEVEL', '--allow-open-network']) {
      assert.ok(help.includes(name), name);
    }
  });

  it('gives the client commands their server and token: flags, then environment, then defaults', () => {
    assert.deepEqual(clientSettings({}), { url: 'http://localhost:8080', token: undefined });
    const env = { POSTBOX_URL: 'https://pb.example.com/prefix/', POSTBOX_TOKEN: 'pbx_env' };
    assert.deepEqual(clientSettings(env), { url: 'https://pb.example.com/prefix', token: 'pbx_env' });
    assert.deepEqual(clientSettings(env, { url: 'http://127.0.0.1:9', token: 'pbx_flag' }), { url: 'http://127.0.0.1:9', token: 'pbx_flag' });
    assert.equal(clientSettings(env, { token: '' }).token, undefined, 'an empty --token means none');
    assert.equal(clientSettings({ POSTBOX_URL: '' }).url, 'http://localhost:8080');
    assert.throws(() => clientSettings({ POSTBOX_URL: 'localhost:8080' }), (err: unknown) =>
      err instanceof ConfigError && /^POSTBOX_URL must be an http:\/\/ or https:\/\/ URL/.test(err.message));
    assert.throws(() => clientSettings({}, { url: 'no url' }), /--url is not a URL: "no url"/);
  });
});
