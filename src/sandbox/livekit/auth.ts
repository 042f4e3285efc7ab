/**
 * API authentication, as LiveKit's `APIKeyAuthMiddleware` and `Ensure*Permission` do it.
 *
 * Two layers with different failure shapes, both HTTP 401:
 * - the middleware rejects an unusable token (not Bearer, unparsable, unknown key, bad
 *   signature, expired) with a plain-text body, before any Twirp handling;
 * - a request without a token, or whose token lacks the grant a method needs, reaches the
 *   handler and fails there as Twirp `unauthenticated` "permissions denied".
 */
import { TokenVerifier } from 'livekit-server-sdk';
import type { ClaimGrants } from 'livekit-server-sdk';
import { TwirpErrors } from './twirp.ts';

const BEARER_PREFIX = 'Bearer ';

export type AuthOutcome =
  { ok: true; claims: ClaimGrants | undefined } | { ok: false; status: 401; message: string };

/** Reads the `iss` claim without verifying, to find the secret to verify with. */
function unverifiedIssuer(token: string): string | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined) return undefined;
  try {
    const claims: unknown = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    if (typeof claims !== 'object' || claims === null || !('iss' in claims)) return undefined;
    return typeof claims.iss === 'string' && claims.iss !== '' ? claims.iss : undefined;
  } catch {
    return undefined;
  }
}

export async function authenticate(options: {
  authorization: string | undefined;
  keys: ReadonlyMap<string, string>;
}): Promise<AuthOutcome> {
  const { authorization, keys } = options;
  if (authorization === undefined || authorization === '') return { ok: true, claims: undefined };
  if (!authorization.startsWith(BEARER_PREFIX)) {
    return {
      ok: false,
      status: 401,
      message: `invalid authorization header. Must start with ${BEARER_PREFIX}`,
    };
  }
  const token = authorization.slice(BEARER_PREFIX.length);
  const apiKey = unverifiedIssuer(token);
  if (apiKey === undefined) return { ok: false, status: 401, message: 'invalid authorization token' };
  const secret = keys.get(apiKey);
  if (secret === undefined) return { ok: false, status: 401, message: `invalid API key: ${apiKey}` };
  try {
    const claims = await new TokenVerifier(apiKey, secret).verify(token);
    return { ok: true, claims };
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return { ok: false, status: 401, message: `invalid token: ${token}, error: ${reason}` };
  }
}

/** `EnsureRecordPermission`: every Egress method. */
export function requireRecordGrant(claims: ClaimGrants | undefined): void {
  if (claims?.video?.roomRecord !== true) throw TwirpErrors.permissionDenied();
}

/** `EnsureCreatePermission`: CreateRoom, DeleteRoom. */
export function requireCreateGrant(claims: ClaimGrants | undefined): void {
  if (claims?.video?.roomCreate !== true) throw TwirpErrors.permissionDenied();
}

/** `EnsureListPermission`: ListRooms. */
export function requireListGrant(claims: ClaimGrants | undefined): void {
  if (claims?.video?.roomList !== true) throw TwirpErrors.permissionDenied();
}

/** `EnsureAdminPermission`: participant methods, only for the room named in the token. */
export function requireAdminGrant(claims: ClaimGrants | undefined, roomName: string): void {
  if (claims?.video?.roomAdmin !== true || claims.video.room !== roomName) {
    throw TwirpErrors.permissionDenied();
  }
}
