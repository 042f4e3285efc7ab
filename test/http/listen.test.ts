/**
 * Where callsync can open its port with several sockets (src/http/listen.ts): Node's `reusePort`
 * listen option, added in Node 23.1.0 and 22.12.0, on Linux (other platforms refuse the option
 * or share a port without spreading connections).
 */
import { describe, expect, it } from 'vitest';
import { canSharePort } from '../../src/http/listen.ts';

describe('canSharePort', () => {
  it.each([
    { version: '20.19.0', platform: 'linux', expected: false },
    { version: '20.20.2', platform: 'linux', expected: false },
    { version: '22.11.0', platform: 'linux', expected: false },
    { version: '22.12.0', platform: 'linux', expected: true },
    { version: '22.23.5', platform: 'linux', expected: true },
    { version: '23.0.0', platform: 'linux', expected: false },
    { version: '23.1.0', platform: 'linux', expected: true },
    { version: '24.22.3', platform: 'linux', expected: true },
    { version: '26.0.0', platform: 'linux', expected: true },
    { version: '24.22.3', platform: 'darwin', expected: false },
    { version: '24.22.3', platform: 'win32', expected: false },
  ] as const)('Node $version on $platform: $expected', ({ version, platform, expected }) => {
    expect(canSharePort(version, platform)).toBe(expected);
  });
});
