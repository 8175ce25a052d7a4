/**
 * What a client needs before it can act: `GET /v1/server` says how the server runs (open or
 * token mode, the message size limit), and `GET /v1/me` says who the caller's token is. The
 * web app asks both to choose its sign-in screen and to learn the user behind a token.
 */
import { Type, type Static } from 'typebox';
import type { Actor } from '../domain/access.js';
import type { Identity, ServerInfo } from '../protocol/types.js';
import type { App } from './app-types.js';

const ServerInfoSchema = Type.Object({
  auth: Type.Union([Type.Literal('open'), Type.Literal('token')], {
    description: '`open` (POSTBOX_AUTH=open): no token, anyone acts as any user; only managing users, tokens and ' +
      'webhooks needs the admin token. `token` (POSTBOX_AUTH=token, and also POSTBOX_AUTH=jwt): every call needs a ' +
      'bearer token, a Postbox token (pbx_…) or the admin token, and in JWT mode the application\'s own JWT as well; ' +
      'a client signs in the same way in both.',
  }),
  maxMessageBytes: Type.Integer({ description: 'The largest message text accepted, in UTF-8 bytes.' }),
  version: Type.String(),
}, { title: 'ServerInfo' });

const IdentitySchema = Type.Object({
  user: Type.Union([Type.String(), Type.Null()], { description: 'The user the token acts as; null for the admin token or no token in open mode.' }),
  admin: Type.Boolean({ description: 'True for the admin token.' }),
}, { title: 'Identity' });

// Compile-time proof that the schemas and the protocol types describe the same shapes.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const sameShapes: [Same<Static<typeof ServerInfoSchema>, ServerInfo>, Same<Static<typeof IdentitySchema>, Identity>] = [true, true];
void sameShapes;

/** The identity an actor stands for. */
function identityOf(actor: Actor): Identity {
  return { user: actor.kind === 'user' ? actor.id : null, admin: actor.kind === 'admin' };
}

/** Registers `GET /v1/server` and `GET /v1/me`. */
export function sessionRoutes(app: App, info: ServerInfo): void {
  const frozen = Object.freeze({ ...info });
  app.get('/v1/server', {
    config: { access: 'public' },
    schema: {
      tags: ['operations'],
      summary: 'How this server runs: its access mode and message size limit',
      description: 'Public, so a client can choose how to sign in before it has a token.',
      response: { 200: ServerInfoSchema },
    },
  }, () => frozen);

  app.get('/v1/me', {
    config: { access: 'user' },
    schema: {
      tags: ['users'],
      summary: 'Who the caller is: the user a token acts as, or the admin',
      description: 'In token mode a 401 says the token is not (or no longer) valid.',
      response: { 200: IdentitySchema },
    },
  }, (request) => identityOf(request.actor));
}
