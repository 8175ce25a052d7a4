/**
 * Where a webhook may call. A destination on a loopback, private, link-local or otherwise
 * internal address is refused unless `POSTBOX_WEBHOOK_ALLOW_PRIVATE=true`: Postbox would
 * otherwise be a way into the network it runs in (SSRF). The check is made on the addresses
 * a name resolves to, when the endpoint is saved and again at every connection (the socket
 * connects to the very address checked), so a name cannot smuggle one in, even by changing
 * its answer between the two (DNS rebinding).
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';

const BLOCKED = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) BLOCKED.addSubnet(net, prefix, 'ipv4');
// fec0::/10 is site-local: deprecated, but still routed inside some networks.
for (const [net, prefix] of [
  ['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8], ['64:ff9b::', 96], ['100::', 64],
] as const) BLOCKED.addSubnet(net, prefix, 'ipv6');

/** The 16 bytes of a valid IPv6 address, however spelled (`::`, a dotted IPv4 tail, a zone). */
function ipv6Bytes(address: string): number[] {
  let text = address.split('%')[0]!;
  const tail = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (tail) {
    const [a, b, c, d] = tail.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, tail.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, rest] = text.includes('::') ? text.split('::') as [string, string] : [text, undefined];
  const before = head === '' ? [] : head.split(':');
  const after = rest === undefined || rest === '' ? [] : rest.split(':');
  const groups = rest === undefined ? before : [...before, ...Array<string>(8 - before.length - after.length).fill('0'), ...after];
  return groups.flatMap((g) => {
    const n = parseInt(g, 16);
    return [n >> 8, n & 0xff];
  });
}

/**
 * The IPv4 address an IPv6 one carries, where it carries one that a host or a relay may
 * reach: IPv4-mapped `::ffff:a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`, IPv4-compatible
 * `::a.b.c.d` (deprecated, `::` and `::1` among them), and 6to4 `2002:aabb:ccdd::/48`.
 */
function embeddedIPv4(address: string): string | undefined {
  const b = ipv6Bytes(address);
  const zero = (from: number, to: number) => b.slice(from, to).every((x) => x === 0);
  const v4 = (at: number) => b.slice(at, at + 4).join('.');
  if (zero(0, 10) && b[10] === 0xff && b[11] === 0xff) return v4(12);
  if (zero(0, 8) && b[8] === 0xff && b[9] === 0xff && zero(10, 12)) return v4(12);
  if (zero(0, 12)) return v4(12);
  if (b[0] === 0x20 && b[1] === 0x02) return v4(2);
  return undefined;
}

/** Whether an IP address is one only the local machine or network should reach. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  if (family === 6) {
    // An IPv6 spelling of an internal IPv4 address is as internal as the address itself.
    const v4 = embeddedIPv4(address);
    if (v4 !== undefined && BLOCKED.check(v4, 'ipv4')) return true;
    return BLOCKED.check(address.split('%')[0]!, 'ipv6');
  }
  return BLOCKED.check(address, 'ipv4');
}

/** Why a destination is refused. */
export class DestinationRefused extends Error {
  override name = 'DestinationRefused';
}

/** Resolves a host name to all its addresses (an IP literal is its own). */
export function resolveHost(host: string): Promise<string[]> {
  const bare = host.replace(/^\[|\]$/g, '');
  if (isIP(bare)) return Promise.resolve([bare]);
  return new Promise((resolve, reject) => {
    dnsLookup(bare, { all: true }, (err, addresses: LookupAddress[]) => (err ? reject(err) : resolve(addresses.map((a) => a.address))));
  });
}

/**
 * Checks a webhook URL: http(s), and (unless private destinations are allowed) a host whose
 * every address is public. Throws {@link DestinationRefused} saying why.
 */
export async function checkDestination(raw: string, allowPrivate: boolean): Promise<URL> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new DestinationRefused('is not a URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new DestinationRefused('must be an http:// or https:// URL');
  if (url.username || url.password) throw new DestinationRefused('must not carry a user name or password');
  if (allowPrivate) return url;
  let addresses: string[];
  try {
    addresses = await resolveHost(url.hostname);
  } catch {
    throw new DestinationRefused(`names a host that does not resolve (${url.hostname})`);
  }
  const inside = addresses.find(isPrivateAddress);
  if (inside) {
    throw new DestinationRefused(`resolves to ${inside}, a loopback, private or link-local address ` +
      '(set POSTBOX_WEBHOOK_ALLOW_PRIVATE=true to allow it)');
  }
  return url;
}

/** A DNS lookup for the socket that refuses private answers, so the address connected to is the one checked. */
function guardedLookup(allowPrivate: boolean): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) return callback(err, '', 4);
      const usable = allowPrivate ? addresses : addresses.filter((a) => !isPrivateAddress(a.address));
      if (usable.length === 0) {
        return callback(new DestinationRefused(`${hostname} resolves only to private addresses`), '', 4);
      }
      if ((options as { all?: boolean }).all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, usable);
      callback(null, usable[0]!.address, usable[0]!.family);
    });
  };
}

/** The answer of one webhook call. */
export interface CallResult {
  status: number;
}

/**
 * POSTs a webhook body, connecting only to a permitted address, following no redirect,
 * giving up after `timeoutMs`. Resolves with the status (any); rejects for no answer.
 */
export async function postWebhook(
  url: string, headers: Record<string, string>, body: string, options: { timeoutMs: number; allowPrivate: boolean },
): Promise<CallResult> {
  const target = new URL(url);
  const host = target.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host) && !options.allowPrivate && isPrivateAddress(host)) {
    throw new DestinationRefused(`${host} is a loopback, private or link-local address`);
  }
  const client = target.protocol === 'https:' ? https : http;
  return new Promise<CallResult>((resolve, reject) => {
    const req = client.request(target, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'Postbox-Webhooks', ...headers, 'content-length': String(Buffer.byteLength(body)) },
      lookup: guardedLookup(options.allowPrivate),
      agent: false,
    }, (res) => {
      // The body is not ours to read; drain it so the socket closes.
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
      res.on('error', reject);
    });
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${options.timeoutMs / 1000} s`)), options.timeoutMs);
    req.on('close', () => clearTimeout(timer));
    req.on('error', reject);
    req.end(body);
  });
}
