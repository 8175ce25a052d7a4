/**
 * A raw HTTP client for tests: node:http, so a test says exactly which headers go out
 * (fetch would add a Content-Type to every string body).
 */
import http from 'node:http';

/** A complete answer. */
export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** The body parsed as JSON. */
  json<T = unknown>(): T;
}

/** One request. */
export interface RawRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** Sends one request to `base` + `path` and reads the whole answer. */
export function request(base: string, path: string, options: RawRequest = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(path, base), {
      method: options.method ?? (options.body === undefined ? 'GET' : 'POST'),
      headers: options.headers ?? {},
      agent,
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          text,
          json: <T>() => JSON.parse(text) as T,
        });
      });
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Sends JSON with `Content-Type: application/json`. */
export function postJson(base: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<RawResponse> {
  return request(base, path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
}
