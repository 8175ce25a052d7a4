/**
 * Waiting on things a test cannot get an event for (state inside a server, a tally of
 * answers), with a deadline instead of a fixed sleep.
 */

/**
 * Resolves once `check()` holds (it may ask something asynchronously), looking again every
 * `intervalMs`; rejects past the deadline, naming `what` it waited for. The one poll loop of
 * the suite: every wait on state a test cannot get an event for goes through it.
 */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 20_000,
  intervalMs = 2,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    // setImmediate alone would spin a core while the servers in this process need it.
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Ids acknowledged so far, in the order the answers came back, with a way to await a count. */
export class Tally {
  readonly ids: string[] = [];
  private waiters: { n: number; done: () => void }[] = [];

  /** Records one acknowledged id. */
  add(id: string): void {
    this.ids.push(id);
    this.waiters = this.waiters.filter((w) => {
      if (this.ids.length < w.n) return true;
      w.done();
      return false;
    });
  }

  /** How many ids so far. */
  get count(): number {
    return this.ids.length;
  }

  /** Resolves once `n` ids have been recorded. */
  reached(n: number): Promise<void> {
    if (this.ids.length >= n) return Promise.resolve();
    return new Promise((done) => this.waiters.push({ n, done }));
  }
}

/** Message ids in numeric order (ids are decimal strings; string order would put "10" before "9"). */
export function byId(x: string, y: string): number {
  return Number(x) - Number(y);
}
