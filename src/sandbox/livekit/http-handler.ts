/**
 * The emulator's HTTP front door, in LiveKit's order: the auth middleware first (an unusable
 * token is a plain-text 401 on any path), then Twirp's own checks (POST only, known route,
 * JSON or protobuf content type, decodable body), then the method, which checks grants.
 * `GET /` answers "OK" like livekit-server's health check; `/_emulator/` goes to the control
 * API when it is enabled.
 */
import type { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { authenticate } from './auth.ts';
import type { LiveKitEmulatorEventMap } from './events.ts';
import { BodyTooLargeError, readBody, writeText } from './http-io.ts';
import type { EmulatorLogger } from './logger.ts';
import type { TwirpEncoding } from './twirp.ts';
import { TwirpError, writeTwirpError, writeTwirpMessage } from './twirp.ts';
import type { TwirpRoute } from './twirp-routes.ts';
import { unemulatedMethodError } from './twirp-routes.ts';

const TWIRP_PREFIX = '/twirp/';
export const CONTROL_PREFIX = '/_emulator/';

export type ControlHandler = (req: IncomingMessage, res: ServerResponse, path: string) => Promise<void>;

function badRoute(msg: string, method: string, path: string): TwirpError {
  return new TwirpError('bad_route', msg, { twirp_invalid_route: `${method} ${path}` });
}

function encodingOf(contentType: string | undefined): TwirpEncoding | undefined {
  const mediaType = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (mediaType === 'application/json') return 'json';
  if (mediaType === 'application/protobuf') return 'protobuf';
  return undefined;
}

export function createHttpHandler(deps: {
  twirpRoutes: ReadonlyMap<string, TwirpRoute>;
  keys: ReadonlyMap<string, string>;
  control: ControlHandler | undefined;
  events: EventEmitter<LiveKitEmulatorEventMap>;
  logger: EmulatorLogger;
}): (req: IncomingMessage, res: ServerResponse) => void {
  const { twirpRoutes, keys, control, events, logger } = deps;

  async function serveTwirp(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const method = req.method ?? 'GET';
    const [, service = '', rpc = ''] = /^\/twirp\/([^/]+)\/([^/]+)$/.exec(path) ?? [];
    const answer = (status: number, code?: string) => {
      logger.debug({ service, method: rpc, status, code }, 'twirp request');
      events.emit('twirp:request', { service, method: rpc, status, ...(code === undefined ? {} : { code }) });
    };

    const auth = await authenticate({ authorization: req.headers.authorization, keys });
    if (!auth.ok) {
      req.resume();
      writeText(res, auth.status, auth.message);
      answer(auth.status);
      return;
    }
    try {
      if (method !== 'POST')
        throw badRoute(`unsupported method "${method}" (only POST is allowed)`, method, path);
      const route = twirpRoutes.get(`${service}/${rpc}`);
      if (!route) {
        throw unemulatedMethodError(service, rpc) ?? badRoute(`no handler for path "${path}"`, method, path);
      }
      const contentType = req.headers['content-type'];
      const encoding = encodingOf(contentType);
      if (!encoding) throw badRoute(`unexpected Content-Type: "${contentType ?? ''}"`, method, path);
      let body: Buffer;
      try {
        body = await readBody(req);
      } catch (error) {
        if (error instanceof BodyTooLargeError) throw new TwirpError('malformed', error.message);
        throw error;
      }
      const message = await route.handle({ body, encoding, claims: auth.claims });
      writeTwirpMessage(res, message, encoding);
      answer(200);
    } catch (error) {
      req.resume();
      const twirpError =
        error instanceof TwirpError
          ? error
          : new TwirpError('internal', 'internal error in the LiveKit emulator');
      if (!(error instanceof TwirpError)) {
        logger.error({ path, err: error }, 'twirp handler crashed');
        events.emit('emulator:error', { error, context: `twirp ${path}` });
      }
      writeTwirpError(res, twirpError);
      answer(twirpError.status, twirpError.code);
    }
  }

  return (req, res) => {
    const path = new URL(req.url ?? '/', 'http://emulator').pathname;
    let served: Promise<void>;
    if (path.startsWith(TWIRP_PREFIX)) served = serveTwirp(req, res, path);
    else if (control && path.startsWith(CONTROL_PREFIX)) served = control(req, res, path);
    else if (path === '/' && req.method === 'GET') served = Promise.resolve(writeText(res, 200, 'OK'));
    else served = Promise.resolve(writeText(res, 404, '404 page not found'));
    served.catch((error: unknown) => {
      logger.error({ path, err: error }, 'request crashed');
      events.emit('emulator:error', { error, context: `http ${path}` });
      if (!res.headersSent) writeText(res, 500, 'internal error');
      else res.destroy();
    });
  };
}
