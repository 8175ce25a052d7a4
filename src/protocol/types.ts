/**
 * Wire types shared by the server, the TypeScript client and the web app.
 *
 * Plain data only, no Node imports: the web app and the client compile this file as is.
 * The server's TypeBox schemas are checked against these types at compile time.
 */

/** A message, the one shape used everywhere: legacy and v1, HTTP and stream. */
export interface Message {
  /** Opaque, server-assigned; also the paging and stream cursor. */
  id: string;
  fromUser: string;
  toUser: string;
  message: string;
  /** ISO 8601 UTC timestamp with milliseconds. */
  sentAt: string;
  /** When the recipient marked it read, or null. */
  readAt: string | null;
}

/** What a client sends to create a message. */
export interface SendMessage {
  /** Optional in token mode, where it is taken from the token. */
  fromUser?: string | number;
  toUser: string | number;
  message: string;
}

/** One page of messages, always oldest first. */
export interface MessagePage {
  messages: Message[];
  /** The cursor for the following page in the same direction; null when there is nothing further now. */
  next: string | null;
}

/** One entry of a user's conversation list. */
export interface Conversation {
  peer: string;
  lastMessage: Message;
  /** Messages from the peer to the user not yet read. */
  unread: number;
}

/** A user's conversations, most recent first. */
export interface ConversationList {
  conversations: Conversation[];
  /** Pass as `before` for older conversations; null when there are none. */
  next: string | null;
}

/** Answer to marking messages read. */
export interface ReadResult {
  /** Messages to the user still unread. */
  unread: number;
  /** How many messages this call marked read. */
  marked: number;
}

/** A field-level complaint in a {@link Problem}. */
export interface ProblemFieldError {
  field: string;
  message: string;
}

/** An RFC 9457 problem document: every error answer. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  errors: ProblemFieldError[];
  /** On a 5xx: the id under which the cause was logged (the client's `X-Request-Id` if it sent one). */
  requestId?: string;
}

/** Answer to creating a user: the token is shown only this once. */
export interface CreatedUser {
  id: string;
  token: string;
}

/** A user as the admin sees it. */
export interface User {
  id: string;
  createdAt: string;
}

/** What a server says about itself before anyone signs in (`GET /v1/server`). */
export interface ServerInfo {
  /** `open`: anyone acts as any user, no token; `token`: every call needs a bearer token. */
  auth: 'open' | 'token';
  /** The largest message text accepted, in UTF-8 bytes. */
  maxMessageBytes: number;
  /** The server's version. */
  version: string;
}

/** Who the caller's credentials make it (`GET /v1/me`). */
export interface Identity {
  /** The user a token acts as; null for the admin token, and in open mode without a token. */
  user: string | null;
  /** True for the admin token. */
  admin: boolean;
}
