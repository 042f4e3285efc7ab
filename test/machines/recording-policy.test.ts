/**
 * The recording policy, table-driven. Expected values come from the contract's partial rule
 * (every cause ends `partial` with a reason) and the policy's stated numbers: the fast lane's
 * seven attempts for source errors, 256 KiB/s per upload attempt.
 */
import { describe, expect, it } from 'vitest';
import {
  MISSING_RECORDING_REASONS,
  hasUsableFile,
  isRecordingSourceError,
  maxAttemptsFor,
  missingReasonOfError,
  missingReasonOfSettlement,
  recordingAttemptTimeoutMs,
} from '../../src/machines/recording-policy.ts';
import { MAX_ATTEMPTS } from '../../src/machines/retry-policy.ts';

const error = (code: string, retryable: boolean) => ({ code, message: code, retryable });

describe('recording policy', () => {
  it.each([
    ['RECORDING_NOT_FOUND', true, 'file_missing'],
    ['RECORDING_NO_PATH', false, 'file_missing'],
    ['RECORDINGS_DIR_MISSING', true, 'file_missing'],
    ['RECORDING_INVALID', false, 'file_not_ogg'],
    ['RECORDING_NOT_A_FILE', false, 'file_not_ogg'],
    ['RECORDING_SIZE_MISMATCH', false, 'file_not_ogg'],
    ['RECORDING_OUTSIDE_ROOT', false, 'file_outside_root'],
    ['RECORDING_CHANGED', false, 'file_outside_root'],
    ['STORAGE_ACCESS_DENIED', false, 'storage_refused'],
    ['STORAGE_UNAVAILABLE', true, 'storage_unavailable'],
    ['RECORDING_READ_FAILED', true, 'storage_unavailable'],
    ['CRM_REJECTED', false, 'crm_refused'],
    ['CRM_BAD_RESPONSE', false, 'crm_refused'],
    ['CRM_SERVER_ERROR', true, 'crm_unavailable'],
    ['CRM_TIMEOUT', true, 'crm_unavailable'],
    ['UNEXPECTED_ERROR', true, 'internal_error'],
  ])('%s (retryable %s) → %s', (code, retryable, reason) => {
    expect(missingReasonOfError(error(code, retryable))).toBe(reason);
    expect(MISSING_RECORDING_REASONS).toContain(reason);
  });

  it.each([
    ['failed', 'egress_failed'],
    ['aborted', 'egress_aborted'],
    ['not_started', 'egress_not_started'],
    ['timed_out', 'egress_timed_out'],
    ['complete', 'file_missing'],
    ['limit_reached', 'file_missing'],
  ] as const)('an egress settled %s with no usable file → %s', (status, reason) => {
    expect(missingReasonOfSettlement({ status, file: null, via: 'poll', at: 0 })).toBe(reason);
  });

  it.each([
    ['complete', { filename: 'a.ogg', location: '/rec/a.ogg' }, true],
    ['limit_reached', { filename: 'a.ogg', location: '' }, true],
    ['failed', { filename: 'a.ogg', location: 'https://b.s3.amazonaws.com/a.ogg' }, true],
    ['failed', { filename: 'a.ogg', location: '', sizeBytes: 2048 }, true],
    ['failed', { filename: 'a.ogg', location: '' }, false],
    ['aborted', { filename: 'a.ogg', location: '/rec/a.ogg' }, false],
    ['complete', { filename: '', location: '' }, false],
    ['complete', null, false],
  ] as const)('%s with %j is usable: %s', (status, file, usable) => {
    expect(hasUsableFile(status, file)).toBe(usable);
  });

  it('gives source errors of the recording step the fast lane only; the CRM and the call data the whole schedule', () => {
    expect(isRecordingSourceError({ code: 'STORAGE_UNAVAILABLE' })).toBe(true);
    expect(isRecordingSourceError({ code: 'RECORDINGS_DIR_MISSING' })).toBe(true);
    expect(isRecordingSourceError({ code: 'CRM_SERVER_ERROR' })).toBe(false);
    expect(maxAttemptsFor('recording', { code: 'STORAGE_UNAVAILABLE' }, MAX_ATTEMPTS)).toBe(7);
    expect(maxAttemptsFor('recording', { code: 'STORAGE_UNAVAILABLE' }, 3)).toBe(3);
    expect(maxAttemptsFor('recording', { code: 'CRM_SERVER_ERROR' }, MAX_ATTEMPTS)).toBe(MAX_ATTEMPTS);
    expect(maxAttemptsFor('call-data', { code: 'RECORDING_READ_FAILED' }, MAX_ATTEMPTS)).toBe(MAX_ATTEMPTS);
  });

  it("names every reason of the README's recording_missing_reason table, in its order", () => {
    expect(MISSING_RECORDING_REASONS).toEqual([
      'egress_failed',
      'egress_aborted',
      'egress_not_started',
      'egress_timed_out',
      'file_missing',
      'file_not_ogg',
      'file_outside_root',
      'storage_refused',
      'storage_unavailable',
      'crm_refused',
      'crm_unavailable',
      'internal_error',
    ]);
  });

  it.each([
    [undefined, 60_000],
    [-4096, 60_000],
    [Number.POSITIVE_INFINITY, 60_000],
    [0, 60_000],
    [Number.NaN, 60_000],
    [256 * 1024, 61_000],
    [89 * 1024 * 1024, 60_000 + 356_000],
    [200 * 1024 * 1024, 60_000 + 800_000],
  ])('an upload attempt for %s bytes gets %i ms (60 s base)', (sizeBytes, expected) => {
    expect(recordingAttemptTimeoutMs(60_000, sizeBytes)).toBe(expected);
  });
});
