/**
 * Damaging a SQLite store on purpose, as a bad disk or a stray write would: which pages
 * hold what (SQLite's dbstat), and random bytes over some of them. The store must be closed.
 */
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import Database from 'better-sqlite3';

/** The store's page size, and the numbers of the pages dbstat lists `where` (a condition on name, pagetype), in order. */
export function storePages(path: string, where: string): { pageSize: number; pages: number[] } {
  const probe = new Database(path, { readonly: true });
  try {
    const pageSize = probe.pragma('page_size', { simple: true }) as number;
    const pages = probe.prepare(`SELECT pageno FROM dbstat WHERE ${where} ORDER BY pageno`).pluck().all() as number[];
    return { pageSize, pages };
  } finally {
    probe.close();
  }
}

/** Random bytes over each of `pages`, keeping the first `keep` bytes of each (an overflow page's pointer to the next). */
export async function overwritePages(path: string, pageSize: number, pages: readonly number[], keep = 0): Promise<void> {
  const file = await open(path, 'r+');
  try {
    for (const page of pages) await file.write(randomBytes(pageSize - keep), 0, pageSize - keep, (page - 1) * pageSize + keep);
  } finally {
    await file.close();
  }
}

/** Random bytes over three of the messages table's leaf pages in the middle of its range (not those start-up reads). */
export async function damageMessageLeaves(path: string): Promise<number> {
  const { pageSize, pages } = storePages(path, "name = 'messages' AND pagetype = 'leaf'");
  const middle = Math.floor(pages.length / 2);
  await overwritePages(path, pageSize, pages.slice(middle, middle + 3));
  return pages.length;
}
