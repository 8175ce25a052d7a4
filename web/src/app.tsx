/**
 * The web app's screens: sign-in, the admin page, and the chat (conversation list,
 * conversation view, send box). State that outlives a screen lives in {@link Chat}.
 */
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { JSX } from 'preact';
import {
  PostboxClient, PostboxError, type Message, type ServerInfo, type User,
} from '../../src/client/index.js';
import { Chat, type ConversationView, type PendingSend } from './chat.js';
import { applyTheme, loadSession, loadTheme, saveSession, type Session, type Theme } from './session.js';
import { byteLength, fullTime, idTaken, sentence, shortTime, userIdProblem } from './words.js';

const origin = () => location.origin;

/** The client for a session (no token in open mode). */
function clientFor(session?: Session): PostboxClient {
  return new PostboxClient({ url: origin(), token: session?.token ?? null });
}

/** The route in the address's fragment: `#/c/<peer>`, `#/admin`, or the list. */
function useRoute(): string {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const on = () => setHash(location.hash);
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return hash;
}

function peerOf(hash: string): string | undefined {
  const m = /^#\/c\/(.+)$/.exec(hash);
  if (!m) return undefined;
  try {
    return decodeURIComponent(m[1]!);
  } catch {
    return undefined;
  }
}

const link = (peer: string) => `#/c/${encodeURIComponent(peer)}`;

/** The whole app: finds out the server's mode, then shows sign-in or the signed-in screens. */
export function App(): JSX.Element {
  const [info, setInfo] = useState<ServerInfo>();
  const [bootProblem, setBootProblem] = useState<string>();
  const [session, setSession] = useState<Session>();
  const [reason, setReason] = useState<string>();
  const [checking, setChecking] = useState(true);

  useEffect(() => {
    let stop = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const boot = async () => {
      try {
        const found = await clientFor().serverInfo();
        if (stop) return;
        setInfo(found);
        setBootProblem(undefined);
        const remembered = loadSession(found.auth);
        if (remembered?.token) {
          // A remembered token may have been revoked since: ask before showing anything.
          try {
            const me = await clientFor(remembered).me();
            if (!stop) setSession({ ...remembered, user: me.user, admin: me.admin });
          } catch (err) {
            if (err instanceof PostboxError && err.status === 401) {
              saveSession(undefined);
              setReason(sentence(err));
            } else {
              setSession(remembered); // the server is away; the chat screen says so and retries
            }
          }
        } else if (remembered) {
          setSession(remembered);
        }
        setChecking(false);
      } catch (err) {
        if (stop) return;
        setBootProblem(sentence(err));
        timer = setTimeout(() => void boot(), 3000);
      }
    };
    void boot();
    return () => {
      stop = true;
      clearTimeout(timer);
    };
  }, []);

  const signIn = (s: Session) => {
    saveSession(s);
    setReason(undefined);
    setSession(s);
    if (s.admin) location.hash = '#/admin';
  };
  const signOut = (why?: string) => {
    saveSession(undefined);
    setSession(undefined);
    setReason(why);
    document.title = 'Postbox';
    if (location.hash) history.replaceState(null, '', location.pathname);
  };

  if (!info || checking) {
    return (
      <main class="center">
        <h1>Postbox</h1>
        <p role="status">{bootProblem ?? 'Connecting to the server…'}</p>
      </main>
    );
  }
  if (!session) return <SignIn info={info} reason={reason} onSignedIn={signIn} />;
  if (session.admin) return <AdminPage session={session} onSignOut={signOut} />;
  return <ChatScreen key={session.user} session={session} info={info} onSignOut={signOut} />;
}

// ---- sign-in ---------------------------------------------------------------------------

function SignIn(props: { info: ServerInfo; reason?: string | undefined; onSignedIn: (s: Session) => void }): JSX.Element {
  const token = props.info.auth === 'token';
  const [value, setValue] = useState('');
  const [problem, setProblem] = useState<string>();
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    const typed = value.trim();
    if (!token) {
      const bad = userIdProblem(typed);
      if (bad) return setProblem(bad);
      return props.onSignedIn({ mode: 'open', user: typed, admin: false });
    }
    if (typed === '') return setProblem('Paste your token: your administrator gives it to you.');
    setBusy(true);
    try {
      const me = await clientFor({ mode: 'token', user: null, admin: false, token: typed }).me();
      props.onSignedIn({ mode: 'token', user: me.user, admin: me.admin, token: typed });
    } catch (err) {
      setProblem(sentence(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="center">
      <h1>Postbox</h1>
      <form class="card signin" onSubmit={(e) => void submit(e)} noValidate>
        <p class="hint">
          {token
            ? 'This server needs a token. Paste the token your administrator gave you.'
            : 'Anyone may use this server as any user. Who are you?'}
        </p>
        {(problem ?? props.reason) && <p class="problem" role="alert">{problem ?? props.reason}</p>}
        <label for="signin-field">{token ? 'Token' : 'User'}</label>
        <input
          id="signin-field"
          type={token ? 'password' : 'text'}
          autoComplete={token ? 'current-password' : 'username'}
          autoFocus
          value={value}
          onInput={(e) => setValue(e.currentTarget.value)}
        />
        <button type="submit" disabled={busy}>Sign in</button>
      </form>
    </main>
  );
}

// ---- shared header ---------------------------------------------------------------------

function ThemeSwitch(): JSX.Element {
  const [theme, setTheme] = useState<Theme>(loadTheme);
  useEffect(() => applyTheme(theme), [theme]);
  const next: Record<Theme, Theme> = { system: 'light', light: 'dark', dark: 'system' };
  const names: Record<Theme, string> = { system: 'system', light: 'light', dark: 'dark' };
  return (
    <button type="button" class="quiet" onClick={() => setTheme((current) => next[current])} title="Switch between the system's theme, light and dark">
      Theme: {names[theme]}
    </button>
  );
}

function Header(props: { who: string; children?: JSX.Element | (JSX.Element | false)[]; onSignOut: () => void }): JSX.Element {
  return (
    <header class="top">
      <span class="brand">Postbox</span>
      <span class="who">Signed in as <strong>{props.who}</strong></span>
      <span class="tools">
        {props.children}
        <ThemeSwitch />
        <button type="button" class="quiet" onClick={props.onSignOut}>Sign out</button>
      </span>
    </header>
  );
}

// ---- admin -----------------------------------------------------------------------------

function AdminPage(props: { session: Session; onSignOut: (why?: string) => void }): JSX.Element {
  const client = useMemo(() => clientFor(props.session), [props.session]);
  const [users, setUsers] = useState<User[]>();
  const [problem, setProblem] = useState<string>();
  const [newId, setNewId] = useState('');
  const [issued, setIssued] = useState<{ id: string; token: string }>();
  /** What the Copy button did, in words; empty before it is pressed. */
  const [copied, setCopied] = useState('');
  const tokenField = useRef<HTMLInputElement>(null);

  const failed = (err: unknown) => {
    if (err instanceof PostboxError && err.status === 401) props.onSignOut(sentence(err));
    else setProblem(sentence(err));
  };
  const load = async () => {
    try {
      setUsers((await client.listUsers()).users);
    } catch (err) {
      failed(err);
    }
  };
  useEffect(() => {
    document.title = 'Users · Postbox';
    void load();
  }, []);

  const add = async (e: Event) => {
    e.preventDefault();
    const id = newId.trim();
    const bad = userIdProblem(id);
    if (bad) return setProblem(bad);
    try {
      const created = await client.createUser(id);
      setIssued(created);
      setCopied('');
      setNewId('');
      setProblem(undefined);
      await load();
    } catch (err) {
      // The typed id stays in the field. The list says whether it is a user's or a removed user's.
      if (err instanceof PostboxError && err.type.endsWith('/user_exists') && users) setProblem(idTaken(id, users.some((u) => u.id === id)));
      else failed(err);
    }
  };
  const copy = async () => {
    if (!issued) return;
    let done = true;
    try {
      // The clipboard API exists only in secure contexts; plain HTTP on a network address is not one.
      await navigator.clipboard.writeText(issued.token);
    } catch {
      // The old way copies the selection. The field keeps it, so that where the browser refuses
      // even this, the person's own Ctrl+C takes the token; and it is not called copied then.
      tokenField.current?.focus();
      tokenField.current?.select();
      done = document.execCommand('copy');
    }
    setCopied(done ? 'Copied.' : 'Selected: press Ctrl+C (⌘C on a Mac) to copy it.');
  };
  const remove = async (id: string) => {
    if (!confirm(`Remove the user "${id}"? Their tokens stop working at once; their messages stay.`)) return;
    try {
      await client.deleteUser(id);
      if (issued?.id === id) setIssued(undefined);
      await load();
    } catch (err) {
      failed(err);
    }
  };

  return (
    <div class="page">
      <Header who="the administrator" onSignOut={() => props.onSignOut()} />
      <main class="admin">
        <h1>Users</h1>
        {problem && <p class="problem" role="alert">{problem}</p>}
        <form class="row" onSubmit={(e) => void add(e)} noValidate>
          <label for="new-user">New user</label>
          <input id="new-user" value={newId} onInput={(e) => setNewId(e.currentTarget.value)} autoComplete="off" />
          <button type="submit">Add user</button>
        </form>
        {issued && (
          <section class="card issued" aria-labelledby="issued-title">
            <h2 id="issued-title">Token for {issued.id}</h2>
            <p>This token is shown only now. Copy it and give it to {issued.id}: it signs them in.</p>
            <div class="row">
              <input ref={tokenField} readOnly value={issued.token} aria-label={`Token for ${issued.id}`} class="mono" />
              <button type="button" onClick={() => void copy()}>Copy</button>
            </div>
            <p role="status" class="hint">{copied}</p>
          </section>
        )}
        {users === undefined ? <p role="status">Loading users…</p> : users.length === 0 ? <p>No users yet.</p> : (
          <ul class="users" aria-label="Users">
            {users.map((u) => (
              <li key={u.id}>
                <span class="peer">{u.id}</span>
                <span class="hint">added <time dateTime={u.createdAt} title={fullTime(u.createdAt)}>{shortTime(u.createdAt)}</time></span>
                <button type="button" class="danger" aria-label={`Remove ${u.id}`} onClick={() => void remove(u.id)}>Remove</button>
              </li>
            ))}
          </ul>
        )}
      </main>
    </div>
  );
}

// ---- chat ------------------------------------------------------------------------------

/** Re-renders whenever `chat` changes, and once a minute for the relative times. */
function useChat(chat: Chat): void {
  const [, setTick] = useState(0);
  const bump = () => setTick((n) => n + 1);
  useEffect(() => chat.listen(bump), [chat]);
  useEffect(() => {
    const t = setInterval(bump, 60_000);
    return () => clearInterval(t);
  }, []);
}

function NotifyButton(): JSX.Element | null {
  const supported = typeof Notification !== 'undefined';
  const [permission, setPermission] = useState(supported ? Notification.permission : 'denied');
  if (!supported || permission !== 'default') return null;
  return (
    <button type="button" class="quiet" onClick={() => void Notification.requestPermission().then(setPermission)}>
      Notify me
    </button>
  );
}

function ChatScreen(props: { session: Session; info: ServerInfo; onSignOut: (why?: string) => void }): JSX.Element {
  const me = props.session.user!;
  const chat = useMemo(() => new Chat(clientFor(props.session), me, (why) => props.onSignOut(why), (m) => {
    if (typeof Notification !== 'undefined' && Notification.permission === 'granted') {
      const n = new Notification(`Postbox: ${m.fromUser}`, { body: m.message.slice(0, 200), tag: `postbox-${m.fromUser}` });
      n.onclick = () => {
        focus();
        location.hash = link(m.fromUser);
      };
    }
  }), [props.session]);
  useChat(chat);
  const route = useRoute();
  const peer = peerOf(route);

  useEffect(() => {
    chat.start();
    // A connection that went through a network change may be dead without knowing it yet.
    const reconnect = () => chat.reconnect();
    const shown = () => chat.shown();
    addEventListener('online', reconnect);
    addEventListener('offline', reconnect);
    document.addEventListener('visibilitychange', shown);
    return () => {
      removeEventListener('online', reconnect);
      removeEventListener('offline', reconnect);
      document.removeEventListener('visibilitychange', shown);
      chat.stop();
    };
  }, [chat]);
  useEffect(() => void chat.open(peer), [chat, peer]);

  const unread = chat.unreadTotal;
  useEffect(() => {
    document.title = `${unread > 0 ? `(${unread}) ` : ''}${peer ? `${peer} · ` : ''}Postbox`;
  }, [unread, peer]);

  const state = { connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…' }[chat.connection];
  return (
    <div class={`page chat${peer ? ' has-open' : ''}`}>
      <Header who={me} onSignOut={() => props.onSignOut()}>
        {/* The reason is text, not a tooltip: a keyboard or screen-reader user never sees a title. */}
        <span class={`conn ${chat.connection}`} role="status">
          <span class="dot" aria-hidden="true" />{state}
          {chat.connectionProblem && <span class="why"> {chat.connectionProblem}</span>}
        </span>
        <NotifyButton />
      </Header>
      <div class="panes">
        <aside class="side">
          <NewConversation />
          <ConversationList chat={chat} current={peer} />
        </aside>
        <main class="main">
          {peer
            ? <ConversationPane key={peer} chat={chat} peer={peer} maxBytes={props.info.maxMessageBytes} />
            : <p class="empty">Choose a conversation, or start a new one with a user id.</p>}
        </main>
      </div>
    </div>
  );
}

function NewConversation(): JSX.Element {
  const [id, setId] = useState('');
  const [problem, setProblem] = useState<string>();
  const submit = (e: Event) => {
    e.preventDefault();
    const peer = id.trim();
    const bad = userIdProblem(peer);
    if (bad) return setProblem(bad);
    setProblem(undefined);
    setId('');
    location.hash = link(peer);
  };
  return (
    <form class="newconv" onSubmit={submit} noValidate>
      <label for="new-conversation">New conversation</label>
      <div class="row">
        <input id="new-conversation" placeholder="User id" value={id} onInput={(e) => setId(e.currentTarget.value)} autoComplete="off" />
        <button type="submit">Start</button>
      </div>
      {problem && <p class="problem" role="alert">{problem}</p>}
    </form>
  );
}

function ConversationList(props: { chat: Chat; current: string | undefined }): JSX.Element {
  const { chat } = props;
  return (
    <nav aria-label="Conversations" class="convs">
      {chat.listProblem && (
        <p class="problem" role="alert">
          {chat.listProblem} <button type="button" class="quiet" onClick={() => void chat.loadConversations()}>Try again</button>
        </p>
      )}
      {chat.conversations.length === 0 && !chat.listProblem && <p class="hint">No conversations yet.</p>}
      <ul aria-label="Conversations">
        {chat.conversations.map((c) => {
          const m = c.lastMessage;
          const mine = m.fromUser === chat.me && m.toUser !== chat.me;
          return (
            <li key={c.peer}>
              <a href={link(c.peer)} aria-current={c.peer === props.current ? 'page' : undefined} class={c.unread > 0 ? 'unread' : ''}>
                <span class="line">
                  <span class="peer">{c.peer}</span>
                  <time dateTime={m.sentAt} title={fullTime(m.sentAt)}>{shortTime(m.sentAt)}</time>
                </span>
                <span class="line">
                  <span class="preview">{mine ? 'You: ' : ''}{m.message.split('\n', 1)[0] || ' '}</span>
                  {c.unread > 0 && <span class="badge">{c.unread}<span class="sr"> unread</span></span>}
                </span>
              </a>
            </li>
          );
        })}
      </ul>
      {chat.moreConversations && (
        <button type="button" class="quiet older" aria-disabled={chat.loadingOlderConversations} onClick={() => void chat.loadOlderConversations()}>
          {chat.loadingOlderConversations ? 'Loading older conversations…' : 'Show older conversations'}
        </button>
      )}
    </nav>
  );
}

/** What was typed in each conversation and not sent yet. */
const drafts = new Map<string, string>();

function ConversationPane(props: { chat: Chat; peer: string; maxBytes: number }): JSX.Element {
  const { chat, peer } = props;
  const v: ConversationView = chat.view(peer);
  const scroller = useRef<HTMLDivElement>(null);
  const anchor = useRef<{ height: number; top: number; first: string | undefined; last: string | undefined; count: number }>();
  const [problem, setProblem] = useState<string>();
  const [draft, setDraftState] = useState(() => drafts.get(peer) ?? '');
  // Kept per conversation for the tab's life: switching away loses nothing typed.
  const setDraft = (text: string) => {
    drafts.set(peer, text);
    setDraftState(text);
  };

  // Keeps the view still when older messages are put above, and follows the newest at the
  // bottom when the person was already there (or sent it).
  const first = v.messages[0]?.id;
  const last = v.messages[v.messages.length - 1]?.id;
  const count = v.messages.length + v.pending.length;
  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const before = anchor.current;
    if (!before) {
      el.scrollTop = el.scrollHeight;
    } else if (before.first !== first && before.last === last) {
      el.scrollTop = el.scrollHeight - before.height + before.top;
    } else if (before.count !== count && before.height - before.top - el.clientHeight < 80) {
      el.scrollTop = el.scrollHeight;
    }
    anchor.current = { height: el.scrollHeight, top: el.scrollTop, first, last, count };
  });
  const onScroll = () => {
    const el = scroller.current;
    if (!el) return;
    if (anchor.current) {
      anchor.current.top = el.scrollTop;
      anchor.current.height = el.scrollHeight;
    }
    if (el.scrollTop < 120 && v.older !== null && !v.loadingOlder) void chat.loadOlder(peer);
  };

  const remove = async (m: Message) => {
    if (!confirm('Delete this message for both of you? This cannot be undone.')) return;
    setProblem(await chat.remove(peer, m.id));
  };
  const edit = (p: PendingSend) => setDraft(chat.discard(peer, p.key));

  return (
    <section class="conv" aria-labelledby="conv-title">
      <header class="convhead">
        <a href="#/" class="back">Back<span class="sr"> to conversations</span></a>
        <h1 id="conv-title">{peer}</h1>
      </header>
      <div class="scroller" ref={scroller} onScroll={onScroll}>
        {/* aria-disabled, not disabled, while loading: a disabled button drops the keyboard's
            focus, and reaching this button scrolls to the top, which starts a load by itself. */}
        {v.older !== null && (
          <button type="button" class="quiet older" aria-disabled={v.loadingOlder} onClick={() => void chat.loadOlder(peer)}>
            {v.loadingOlder ? 'Loading older messages…' : 'Load older messages'}
          </button>
        )}
        {(v.problem ?? problem) && <p class="problem" role="alert">{v.problem ?? problem}</p>}
        <ol class="messages" aria-label={`Messages with ${peer}`}>
          {v.messages.map((m) => <MessageItem key={m.id} m={m} me={chat.me} onDelete={() => void remove(m)} />)}
          {v.pending.map((p) => (
            <li key={p.key} class={`msg mine ${p.state}`}>
              <p class="text">{p.text}</p>
              <p class="meta">
                {p.state === 'sending' ? <span role="status">Sending…</span> : (
                  <>
                    <span class="problem" role="alert">Not sent. {p.reason}</span>
                    <button type="button" onClick={() => void chat.retry(peer, p.key)}>Retry</button>
                    <button type="button" class="quiet" onClick={() => edit(p)}>Edit</button>
                  </>
                )}
              </p>
            </li>
          ))}
        </ol>
        {v.loaded && v.messages.length === 0 && v.pending.length === 0 && !v.problem && (
          <p class="empty">No messages with {peer} yet. Say hello.</p>
        )}
      </div>
      <SendBox peer={peer} maxBytes={props.maxBytes} draft={draft} onDraft={setDraft} onSend={(text) => void chat.send(peer, text)} />
    </section>
  );
}

function MessageItem(props: { m: Message; me: string; onDelete: () => void }): JSX.Element {
  const { m } = props;
  const mine = m.fromUser === props.me;
  return (
    <li class={`msg ${mine ? 'mine' : 'theirs'}`}>
      <span class="sr">{mine ? 'You' : m.fromUser}: </span>
      <p class="text">{m.message}</p>
      <p class="meta">
        <time dateTime={m.sentAt} title={fullTime(m.sentAt)}>{shortTime(m.sentAt)}</time>
        {mine && m.toUser !== props.me && <span class="status">{m.readAt ? 'Read' : 'Sent'}</span>}
        <button type="button" class="quiet small" aria-label={`Delete message: ${m.message.slice(0, 40)}`} onClick={props.onDelete}>Delete</button>
      </p>
    </li>
  );
}

function SendBox(props: { peer: string; maxBytes: number; draft: string; onDraft: (t: string) => void; onSend: (text: string) => void }): JSX.Element {
  const { draft, maxBytes } = props;
  const bytes = byteLength(draft);
  const over = bytes > maxBytes;
  const near = bytes > maxBytes * 0.8;
  const field = useRef<HTMLTextAreaElement>(null);
  useEffect(() => field.current?.focus(), [props.peer]);

  const send = () => {
    if (draft.trim() === '' || over) return;
    props.onSend(draft);
    props.onDraft('');
  };
  const onKeyDown = (e: KeyboardEvent) => {
    // Enter sends; Shift+Enter (and Enter while an input method composes) adds a line.
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  };
  return (
    <form class="send" onSubmit={(e) => { e.preventDefault(); send(); }}>
      <textarea
        ref={field}
        aria-label="Message"
        aria-describedby="send-hint"
        placeholder={`Message ${props.peer}`}
        rows={2}
        value={draft}
        onInput={(e) => props.onDraft(e.currentTarget.value)}
        onKeyDown={onKeyDown}
      />
      <button type="submit" disabled={over}>Send</button>
      <p id="send-hint" class={`hint count${over ? ' problem' : ''}`} aria-live="polite">
        {near ? (over
          ? `${(bytes - maxBytes).toLocaleString('en')} bytes over the ${maxBytes.toLocaleString('en')}-byte limit: shorten the message to send it.`
          : `${bytes.toLocaleString('en')} of ${maxBytes.toLocaleString('en')} bytes`) : 'Enter sends; Shift+Enter adds a line.'}
      </p>
    </form>
  );
}
