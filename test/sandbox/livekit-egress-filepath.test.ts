import { describe, expect, it } from 'vitest';
import {
  egressStorageFilepath,
  formatEgressTime,
  formatEgressUtc,
  resolveRecordingPath,
} from '../../src/sandbox/livekit/egress-filepath.ts';
import { TwirpError } from '../../src/sandbox/livekit/twirp.ts';

/** 2026-03-01T12:34:56.789Z */
const REFERENCE_TIMESTAMP_MS = Date.UTC(2026, 2, 1, 12, 34, 56, 789);
const ROOM = { roomName: 'call-42', roomId: 'RM_abcdefghijkl', nowMs: REFERENCE_TIMESTAMP_MS };

describe('egress filepath templating (livekit/egress updateFilepath)', () => {
  it('formats {time} and {utc} with the Go layouts, in UTC', () => {
    expect(formatEgressTime(REFERENCE_TIMESTAMP_MS)).toBe('2026-03-01T123456');
    expect(formatEgressUtc(REFERENCE_TIMESTAMP_MS)).toBe('20260301123456789');
  });

  it.each([
    ['calls/{room_name}-{time}.ogg', 'calls/call-42-2026-03-01T123456.ogg'],
    ['{room_id}/{utc}.ogg', 'RM_abcdefghijkl/20260301123456789.ogg'],
    ['', 'call-42-2026-03-01T123456.ogg'],
    ['calls/', 'calls/call-42-2026-03-01T123456.ogg'],
    ['calls/recording', 'calls/recording.ogg'],
    ['calls/recording.mp4', 'calls/recording.ogg'],
    ['calls/recording.v2', 'calls/recording.v2.ogg'],
    ['./calls//a/../{room_name}.ogg', 'calls/call-42.ogg'],
    ['/srv/out/{room_name}.ogg', '/srv/out/call-42.ogg'],
  ])('%j → %j', (filepath, expected) => {
    expect(egressStorageFilepath({ filepath, ...ROOM })).toBe(expected);
  });

  it.each(['../outside.ogg', 'calls/../../outside.ogg', '/../outside.ogg'])(
    'refuses %j, which climbs out of the recordings directory',
    (filepath) => {
      expect(() => egressStorageFilepath({ filepath, ...ROOM })).toThrowError(
        expect.objectContaining({
          code: 'invalid_argument',
          message: 'request has missing or invalid field: filepath',
        }),
      );
    },
  );

  it('resolves storage paths, relative or absolute, inside the recordings directory', () => {
    expect(resolveRecordingPath({ recordingsDir: '/rec', storageFilepath: 'calls/a.ogg' })).toBe(
      '/rec/calls/a.ogg',
    );
    expect(resolveRecordingPath({ recordingsDir: '/rec', storageFilepath: '/srv/a.ogg' })).toBe(
      '/rec/srv/a.ogg',
    );
    expect(() => resolveRecordingPath({ recordingsDir: '/rec', storageFilepath: '../a.ogg' })).toThrow(
      TwirpError,
    );
  });

  it('refuses a room name that would smuggle the file outside', () => {
    const templated = egressStorageFilepath({
      filepath: '{room_name}.ogg',
      ...ROOM,
      roomName: '../../etc/x',
    });
    expect(() => resolveRecordingPath({ recordingsDir: '/rec', storageFilepath: templated })).toThrow(
      TwirpError,
    );
  });
});
