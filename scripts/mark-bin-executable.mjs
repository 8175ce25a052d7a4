// Sets the execute bits on every file named in package.json "bin", after tsc has written them.
// tsc writes plain 0644 files, and npm only chmods a bin when it links a package: a checkout
// whose dist/ was rebuilt from scratch would otherwise answer `npx postbox` with
// "Permission denied", because the link npx made earlier now points at a fresh file.
import { chmodSync, readFileSync, statSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const bins = typeof pkg.bin === 'string' ? [pkg.bin] : Object.values(pkg.bin ?? {});
for (const bin of bins) {
  const file = new URL(`../${bin}`, import.meta.url);
  // Adds x wherever r is set, as chmod +x would under a usual umask.
  const mode = statSync(file).mode & 0o777;
  chmodSync(file, mode | ((mode & 0o444) >> 2));
}
