/**
 * The status page's session value (src/http/operator-session.ts): made and checked with the
 * operator token, valid for 12 hours, nothing else accepted.
 */
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  SESSION_TTL_MS,
  cookieOf,
  createSessionValue,
  isValidSession,
} from '../../src/http/operator-session.ts';

const TOKEN = 'operator-token';
const NOW_MS = Date.UTC(2026, 0, 1);

describe('the operator session value', () => {
  it('is valid with its token until it expires, and not after', () => {
    const value = createSessionValue(TOKEN, NOW_MS);
    expect(value).toMatch(/^v1\.\d+\.[A-Za-z0-9_-]{43}$/);
    expect(isValidSession(TOKEN, value, NOW_MS)).toBe(true);
    expect(isValidSession(TOKEN, value, NOW_MS + SESSION_TTL_MS - 1)).toBe(true);
    expect(isValidSession(TOKEN, value, NOW_MS + SESSION_TTL_MS)).toBe(false);
    expect(isValidSession('another-token', value, NOW_MS)).toBe(false);
    expect(isValidSession(TOKEN, undefined, NOW_MS)).toBe(false);
  });

  it('refuses one signed for longer than the session lasts, or in another format', () => {
    const farExpiry = `v1.${NOW_MS + 10 * SESSION_TTL_MS}`;
    const signed = `${farExpiry}.${createHmac('sha256', TOKEN).update(farExpiry).digest('base64url')}`;
    expect(isValidSession(TOKEN, signed, NOW_MS)).toBe(false);
    const value = createSessionValue(TOKEN, NOW_MS);
    for (const other of [`v2${value.slice(2)}`, `${value}.x`, `${value}=`, value.toUpperCase(), '']) {
      expect(isValidSession(TOKEN, other, NOW_MS)).toBe(false);
    }
  });

  it('is read from a Cookie header among others', () => {
    expect(cookieOf('a=1; callsync_session=v1.2.x; b=3', 'callsync_session')).toBe('v1.2.x');
    expect(cookieOf('xcallsync_session=v1; b=3', 'callsync_session')).toBeUndefined();
    expect(cookieOf(undefined, 'callsync_session')).toBeUndefined();
  });
});
