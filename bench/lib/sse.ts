/**
 * The stream client the live-delivery scripts share: a bare SSE reader over node:http (with
 * the client's parser, the repo's one), and the server's count of open streams, read from /metrics.
 */
import http from 'node:http';
import { SseParser } from '../../src/client/stream.js';

/** Opens a stream and calls `onMessage` with each message event's data. */
export function subscribe(url: string, user: string, onMessage: (data: string) => void): Promise<http.ClientRequest> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${url}/v1/users/${user}/stream`, { agent: false }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`stream ${user}: ${res.statusCode}`));
      res.setEncoding('utf8');
      const parser = new SseParser((event) => {
        if (event.event === 'message') onMessage(event.data);
      });
      res.on('data', (chunk: string) => parser.push(chunk));
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
