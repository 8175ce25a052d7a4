/**
 * The stream client the live-delivery scripts share: a bare SSE reader over node:http, and
 * the server's count of open streams, read from /metrics.
 */
import http from 'node:http';

/** Opens a stream and calls `onMessage` with each message event's data. */
export function subscribe(url: string, user: string, onMessage: (data: string) => void): Promise<http.ClientRequest> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${url}/v1/users/${user}/stream`, { agent: false }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`stream ${user}: ${res.statusCode}`));
      res.setEncoding('utf8');
      let pending = '';
      res.on('data', (chunk: string) => {
        pending += chunk;
        let end: number;
        while ((end = pending.indexOf('\n\n')) >= 0) {
          const block = pending.slice(0, end);
          pending = pending.slice(end + 2);
          if (!block.startsWith('event: message')) continue;
          const data = /\ndata: (.*)/.exec(block);
          if (data) onMessage(data[1]!);
        }
      });
      resolve(req);
    });
    req.on('error', reject);
  });
}

/** How many live streams the server at `url` reports (`postbox_streams_open`). */
export async function openStreams(url: string): Promise<number> {
  const text = await new Promise<string>((resolve, reject) => {
    http.get(`${url}/metrics`, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
  return Number(/^postbox_streams_open (\d+)$/m.exec(text)?.[1] ?? 0);
}
