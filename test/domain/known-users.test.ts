/**
 * The known-users set that keeps a JWT user's requests free of storage round-trips: it is
 * bounded, and a removal no instance hears (`postbox users remove` beside a SQLite server,
 * which is another connection to the file) is honoured once the entry expires — the bound
 * docs/API.md states. The clock is injected, so nothing waits.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import * as jose from 'jose';
import { STORE_HOLDER } from '../../src/domain/access.js';
import { loadJwtVerifier } from '../../src/domain/jwt.js';
import { KNOWN_USER_TTL_MS, KnownUsers, UserService } from '../../src/domain/users.js';
import { AppError } from '../../src/errors.js';
import { openSqliteStorage } from '../../src/storage/sqlite/sqlite-storage.js';
import { tempDir } from '../helpers/server.js';

const SECRET = 'known-users-test-secret-long-enough-0123';

describe('known users', () => {
  it('holds at most its bound, dropping the oldest, and forgets expired entries', () => {
    const known = new KnownUsers(3, 1000);
    for (const id of ['a', 'b', 'c', 'd']) known.add(id, 0, known.generation);
    assert.equal(known.size, 3);
    assert.equal(known.has('a', 0), false, 'the oldest went');
    assert.equal(known.has('d', 999), true);
    assert.equal(known.has('d', 1000), false, 'expired');
    const before = known.generation;
    known.forget('b');
    known.add('e', 0, before);
    assert.equal(known.has('e', 0), false, 'a lookup that raced a removal is not remembered');
  });

  it('honours a removal made through another connection (the CLI beside a SQLite server) once the entry expires', async () => {
    const dir = await tempDir();
    const path = join(dir, 'p.db');
    let now = Date.now();
    const server = openSqliteStorage({ path, durability: 'relaxed' });
    const cli = openSqliteStorage({ path, durability: 'relaxed' });
    try {
      const jwt = await loadJwtVerifier({ secret: SECRET, leewaySeconds: 30, now: () => now });
      const users = new UserService(server, { mode: 'jwt', adminToken: undefined, jwt, clock: () => now });
      const stop = users.watchRemovals();
      const token = await new jose.SignJWT({ sub: 'zed', exp: Math.floor(now / 1000) + 3600 })
        .setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(SECRET));

      assert.equal((await users.authenticate(token))?.kind, 'user');
      assert.equal(await server.userStatus('zed'), 'user', 'the first request made the record');
      await new UserService(cli).remove(STORE_HOLDER, 'zed');
      assert.equal(await server.userStatus('zed'), 'reserved');

      now += KNOWN_USER_TTL_MS + 1;
      await assert.rejects(users.authenticate(token), (err: unknown) => {
        assert.ok(err instanceof AppError);
        assert.equal(err.status, 401);
        assert.match(err.message, /user "zed" was removed/);
        return true;
      });
      stop();
    } finally {
      await server.close();
      await cli.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
