/**
 * The HTTP connection cap (README, "Limits": half the open-files limit callsync starts with,
 * 512 of 1,024), from a `/proc/<pid>/limits` text as Linux writes it.
 */
import { describe, expect, it } from 'vitest';
import {
  HTTP_MAX_CONNECTIONS_FALLBACK,
  connectionCapFor,
  defaultConnectionCap,
  openFilesLimitOf,
} from '../../src/http/connection-cap.ts';

const LIMITS = (
  soft: string,
  hard: string,
) => `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            ${soft.padEnd(20)} ${hard.padEnd(20)} files
Max locked memory         8388608              8388608              bytes
`;

describe('the HTTP connection cap', () => {
  it('is half the soft open-files limit', () => {
    expect(connectionCapFor(openFilesLimitOf(LIMITS('1024', '1024')))).toBe(512);
    expect(connectionCapFor(openFilesLimitOf(LIMITS('1048576', '1048576')))).toBe(524_288);
    expect(openFilesLimitOf(LIMITS('4096', '65536'))).toBe(4096);
  });

  it('keeps at least 64 for a tiny limit, and 512 where the limit is unknown or unlimited', () => {
    expect(connectionCapFor(100)).toBe(64);
    expect(openFilesLimitOf(LIMITS('unlimited', 'unlimited'))).toBeNull();
    expect(openFilesLimitOf('no such line')).toBeNull();
    expect(connectionCapFor(null)).toBe(512);
    expect(HTTP_MAX_CONNECTIONS_FALLBACK).toBe(512);
  });

  it("reads this process's own limit", async () => {
    const { readFile } = await import('node:fs/promises');
    const own = openFilesLimitOf(await readFile('/proc/self/limits', 'utf8'));
    expect(defaultConnectionCap()).toBe(connectionCapFor(own));
  });
});
