/**
 * What the browser remembers between visits: who signed in (and with which token), and the
 * colour theme chosen. localStorage, per origin; sign-out forgets the session.
 */

/** A signed-in person. */
export interface Session {
  mode: 'open' | 'token';
  /** The user acting; null for the admin. */
  user: string | null;
  admin: boolean;
  /** Token mode only. */
  token?: string;
}

const SESSION_KEY = 'postbox.session';
const THEME_KEY = 'postbox.theme';

/** The theme setting: follow the system, or a fixed choice. */
export type Theme = 'system' | 'light' | 'dark';

function read(key: string): string | null {
  try {
    return localStorage.getItem(key);
  } catch {
    return null; // storage disabled: nothing is remembered, everything still works
  }
}

function write(key: string, value: string | null): void {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch {
    // storage disabled or full: the session lasts as long as the tab
  }
}

/** The remembered session, if it fits the server's mode. */
export function loadSession(mode: 'open' | 'token'): Session | undefined {
  try {
    const s = JSON.parse(read(SESSION_KEY) ?? 'null') as Session | null;
    if (!s || s.mode !== mode) return undefined;
    if (mode === 'open' && typeof s.user === 'string') return s;
    if (mode === 'token' && typeof s.token === 'string') return s;
  } catch {
    // a damaged entry is the same as none
  }
  return undefined;
}

/** Remembers `session`, or forgets it. */
export function saveSession(session: Session | undefined): void {
  write(SESSION_KEY, session ? JSON.stringify(session) : null);
}

/** The remembered theme. */
export function loadTheme(): Theme {
  const t = read(THEME_KEY);
  return t === 'light' || t === 'dark' ? t : 'system';
}

/** Applies and remembers the theme. */
export function applyTheme(theme: Theme): void {
  if (theme === 'system') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  write(THEME_KEY, theme === 'system' ? null : theme);
}
