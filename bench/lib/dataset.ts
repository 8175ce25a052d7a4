/**
 * The stored messages a scenario reads, described by a small spec and generated the same
 * way by the harness (which imports them into Postbox's store) and by the ceiling server
 * (which loads them into memory at start), so both answer over identical data.
 *
 * No Node imports and no Postbox imports: the ceiling loads this file as it is.
 */

/** One message in the contract's shape, as an export/import record carries it. */
export interface DatasetMessage {
  id: string;
  fromUser: string;
  toUser: string;
  message: string;
  sentAt: string;
  readAt: string | null;
}

/** What a store holds before a scenario starts. */
export interface DatasetSpec {
  /** Every message in the store, the scenario's own and the filler around them. */
  total: number;
  /** Users whose inbox a scenario reads, and how many messages each receives. */
  inboxes: Record<string, number>;
  /** A user who has received one message from each of `peers` different peers. */
  conversations?: { user: string; peers: number };
}

/** Where the dataset's timestamps start: a fixed instant, so every run stores the same data. */
const EPOCH = Date.UTC(2026, 0, 1);

/** A message body of about 60 bytes, as short chat messages are. */
function text(i: number): string {
  return `bench message ${i}: the quick brown fox jumps over the dog`;
}

/**
 * Which recipient (and sender) each designated position gets. A scenario user's messages
 * are spread evenly across the whole sequence, as a real inbox interleaves with everyone
 * else's traffic, so a read touches the store the way it would in life rather than one
 * contiguous run of rows.
 */
function placements(spec: DatasetSpec): Map<number, { from: string; to: string }> {
  const slots = new Map<number, { from: string; to: string }>();
  const place = (count: number, offset: number, who: (k: number) => { from: string; to: string }) => {
    for (let k = 0; k < count; k++) {
      let pos = 1 + ((Math.floor((k * spec.total) / count) + offset) % spec.total);
      // Probe forward past a slot another user took; bounded because the spec is checked to fit.
      for (let tries = 0; slots.has(pos) && tries < spec.total; tries++) pos = (pos % spec.total) + 1;
      slots.set(pos, who(k));
    }
  };
  let offset = 0;
  for (const [user, count] of Object.entries(spec.inboxes)) {
    place(count, offset++, (k) => ({ from: `peer${k % 20}`, to: user }));
  }
  if (spec.conversations) {
    const { user, peers } = spec.conversations;
    place(peers, offset++, (k) => ({ from: `friend${k}`, to: user }));
  }
  return slots;
}

/** Throws if the spec's designated messages cannot fit in `total`. */
export function checkDataset(spec: DatasetSpec): void {
  const designated = Object.values(spec.inboxes).reduce((a, b) => a + b, 0) + (spec.conversations?.peers ?? 0);
  if (!Number.isInteger(spec.total) || spec.total < 1) throw new Error(`dataset total must be a positive whole number, got ${spec.total}`);
  if (designated > spec.total) throw new Error(`dataset needs ${designated} designated messages but holds only ${spec.total}`);
}

/**
 * Every message of the dataset in id order (ids 1…total), generated lazily so a million
 * messages never sit in memory at once.
 */
export function* datasetMessages(spec: DatasetSpec): Generator<DatasetMessage> {
  checkDataset(spec);
  const slots = placements(spec);
  // Filler traffic among many users, about a hundred messages each, like a busy server.
  const fillerUsers = Math.max(10, Math.floor(spec.total / 100));
  for (let i = 1; i <= spec.total; i++) {
    const slot = slots.get(i);
    const from = slot ? slot.from : `user${(i * 7) % fillerUsers}`;
    const to = slot ? slot.to : `user${i % fillerUsers}`;
    yield { id: String(i), fromUser: from, toUser: to, message: text(i), sentAt: new Date(EPOCH + i).toISOString(), readAt: null };
  }
}

/** A short label for logs, e.g. "10,000 messages". */
export function describeDataset(spec: DatasetSpec): string {
  return `${spec.total.toLocaleString('en-US')} messages`;
}
