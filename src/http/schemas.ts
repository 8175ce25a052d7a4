/**
 * TypeBox schemas shared by the routes: at once the validation, the request types and the
 * OpenAPI document. `x-error` on a schema is the message a client sees when its pattern fails.
 */
import { Type, type Static, type TSchema } from 'typebox';
import {
  CURSOR_PATTERN, IDEMPOTENCY_KEY_PATTERN, MAX_PAGE, MAX_WAIT_SECONDS, USER_ID_PATTERN,
} from '../domain/rules.js';
import type * as Protocol from '../protocol/types.js';

const USER_ID_ERROR = 'must be 1 to 128 characters, not only dots, none of them "/", "\\", an invisible, blank, control, format, ' +
  'separator, private-use or unassigned character, or a space other than U+0020; not starting with a combining mark, ' +
  'without leading, trailing or doubled spaces';
const USER_ID_RULE = 'A user id: 1–128 characters (stored in Unicode NFC), not only dots, none of them "/", "\\" (read as "/" by URL libraries), a control ' +
  'or format character (Cc, Cf), a line or paragraph separator (Zl, Zp), a space other than U+0020 (Zs), a private-use ' +
  'or unassigned code point (Co, Cn), a default-ignorable code point (Hangul fillers, variation selectors, U+034F) or ' +
  'U+2800; not starting with a combining mark (M), without leading, trailing or doubled spaces. Beyond the pattern: ' +
  'an id that changes under NFKC (fullwidth `Ａｌｉｃｅ`, ligatures, superscripts) is refused, naming its plain form.';

/** A user id in a path or query. */
export const UserId = Type.String({
  pattern: USER_ID_PATTERN,
  description: USER_ID_RULE,
  'x-error': USER_ID_ERROR,
  examples: ['Val'],
});

/** A user id in a body: a JSON number is accepted and stored as its decimal string. */
export const UserIdInput = Type.Unsafe<string | number>({
  type: ['string', 'number'],
  pattern: USER_ID_PATTERN,
  description: `${USER_ID_RULE} A JSON number is stored as its decimal string.`,
  'x-error': USER_ID_ERROR,
  examples: ['Steve'],
});

/** A message id as a path parameter. */
export const MessageIdParam = Type.String({ description: 'A message id (any other text is a 404: no such message).', minLength: 1, maxLength: 32 });

/** The `Last-Event-ID` header an EventSource sends on reconnect: a message id (or 0). */
export const LastEventId = Type.String({
  pattern: '^(?:0|[1-9][0-9]{0,14})?$',
  description: 'Sent by EventSource on reconnect: the id of the last message seen (or 0); wins over after=. Empty is no id.',
  'x-error': 'must be a message id (or 0 for the very start)',
});

/** A message id as a cursor. */
export const Cursor = Type.String({
  pattern: CURSOR_PATTERN,
  description: 'A message id: the page starts just past it. 0 is before the first message.',
  'x-error': 'must be a message id (or 0 for the very start)',
});

/** The Message shape. */
export const MessageSchema = Type.Object({
  id: Type.String({ description: 'Opaque, server-assigned; also the paging and stream cursor.' }),
  fromUser: Type.String(),
  toUser: Type.String(),
  message: Type.String(),
  sentAt: Type.String({ format: 'date-time' }),
  readAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
}, { title: 'Message' });

/** A page of messages. */
export const MessagePageSchema = Type.Object({
  messages: Type.Array(MessageSchema),
  next: Type.Union([Type.String(), Type.Null()], { description: 'Cursor for the following page in the same direction; null when there is nothing further now.' }),
}, { title: 'MessagePage' });

/**
 * Message text: no U+0000 (PostgreSQL cannot store it) and no lone surrogate (not Unicode).
 * With the `u` flag a surrogate pair is one code point outside D800–DFFF, so only a lone
 * half matches the range.
 */
export const MESSAGE_TEXT_PATTERN = '^[^\\u0000\\uD800-\\uDFFF]*$';

/** What a client sends to create a message. */
export const SendBody = Type.Object({
  fromUser: Type.Optional(UserIdInput),
  toUser: UserIdInput,
  message: Type.String({
    description: 'At most POSTBOX_MAX_MESSAGE_BYTES UTF-8 bytes (413 past it); may be empty; no U+0000, no lone surrogate.',
    pattern: MESSAGE_TEXT_PATTERN,
    'x-error': 'must be valid Unicode text without the NUL character (U+0000)',
  }),
}, { title: 'SendMessage', description: 'fromUser may be omitted in token mode: it is taken from the token.' });

/** The title of {@link SendBody}, by which the document marks fromUser required in open mode. */
export const SEND_BODY_TITLE = 'SendMessage';

/** The optional idempotency header of a send. */
export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(Type.String({
    pattern: IDEMPOTENCY_KEY_PATTERN,
    description: '1–255 printable characters. A repeat within 24 h answers the first result and stores nothing new.',
    'x-error': 'must be 1 to 255 printable ASCII characters',
  })),
});

const Limit = Type.Integer({ minimum: 1, maximum: MAX_PAGE, default: 50, description: `Page size, 1–${MAX_PAGE}.` });
const Before = Type.String({
  pattern: '^(?:0|[1-9][0-9]{0,14}|latest)$',
  description: 'A message id, or "latest": the page ends just before it, and pages run backward.',
  'x-error': 'must be a message id or "latest"',
});

/** Paging parameters. */
export const PageQuerySchema = Type.Object({
  after: Type.Optional(Cursor),
  before: Type.Optional(Before),
  limit: Type.Optional(Limit),
});

/** Inbox parameters: paging, filters, long-poll. */
export const InboxQuerySchema = Type.Object({
  after: Type.Optional(Cursor),
  before: Type.Optional(Before),
  limit: Type.Optional(Limit),
  from: Type.Optional(Type.String({ ...UserId, description: 'Only messages from this user.' })),
  unread: Type.Optional(Type.Boolean({ description: 'Only unread messages.' })),
  wait: Type.Optional(Type.Number({
    minimum: 0, maximum: MAX_WAIT_SECONDS,
    description: `Long-poll: if the page would be empty, wait up to this many seconds (0–${MAX_WAIT_SECONDS}) for a message. ` +
      'Forward paging only: wait above 0 with before= and no after= is a 400.',
  })),
});

/** A user in the path. */
export const UserParams = Type.Object({ user: UserId });

/** A conversation in the path. */
export const ConversationParams = Type.Object({ user: UserId, peer: UserId });

/** A conversation list entry. */
export const ConversationSchema = Type.Object({
  peer: Type.String(),
  lastMessage: MessageSchema,
  unread: Type.Integer({ minimum: 0 }),
}, { title: 'Conversation' });

/** A user's conversations. */
export const ConversationListSchema = Type.Object({
  conversations: Type.Array(ConversationSchema),
  next: Type.Union([Type.String(), Type.Null()], { description: 'Pass as before= for older conversations; null when there are none.' }),
}, { title: 'ConversationList' });

/** Conversation list parameters. */
export const ConversationsQuerySchema = Type.Object({
  before: Type.Optional(Before),
  limit: Type.Optional(Limit),
});

/** Marking messages read: exactly one of upTo and ids. */
export const ReadBody = Type.Unsafe<{ upTo?: string; ids?: string[] }>({
  title: 'ReadRequest',
  description: 'Exactly one of upTo (every message up to and including it) or ids.',
  'x-error': 'must give exactly one of upTo (a message id) or ids (a list of message ids)',
  oneOf: [
    { type: 'object', title: 'ReadUpTo', required: ['upTo'], additionalProperties: false, properties: { upTo: Cursor } },
    {
      type: 'object', title: 'ReadIds', required: ['ids'], additionalProperties: false,
      properties: { ids: Type.Array(Cursor, { maxItems: 1000 }) },
    },
  ],
});

/** Answer to marking read. */
export const ReadResultSchema = Type.Object({
  unread: Type.Integer({ minimum: 0 }),
  marked: Type.Integer({ minimum: 0 }),
}, { title: 'ReadResult' });

/** An RFC 9457 problem document. */
export const ProblemSchema = Type.Object({
  type: Type.String(),
  title: Type.String(),
  status: Type.Integer(),
  detail: Type.String(),
  errors: Type.Array(Type.Object({ field: Type.String(), message: Type.String() })),
  requestId: Type.Optional(Type.String({ description: 'On a 5xx: the id under which the cause was logged (X-Request-Id if the client sent one).' })),
}, { title: 'Problem' });

/** An answer with no body (202, 204): documented, never serialized. */
export function NoContent(description: string) {
  return Type.Unsafe<void>({ type: 'null', description });
}

/** A simple status answer. */
export const StatusSchema = Type.Object({ status: Type.String() });

// Compile-time proof that the schemas and the shared protocol types describe the same shapes.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const sameShapes: [
  Same<Static<typeof MessageSchema>, Protocol.Message>,
  Same<Static<typeof MessagePageSchema>, Protocol.MessagePage>,
  Same<Static<typeof ConversationSchema>, Protocol.Conversation>,
  Same<Static<typeof ConversationListSchema>, Protocol.ConversationList>,
  Same<Static<typeof ReadResultSchema>, Protocol.ReadResult>,
  Same<Static<typeof ProblemSchema>, Protocol.Problem>,
] = [true, true, true, true, true, true];
void sameShapes;

/** Schemas for responses that carry a JSON body. */
export type ResponseSchemas = Record<number, TSchema>;
