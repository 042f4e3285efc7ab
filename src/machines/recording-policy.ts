/**
 * What a call's recording may cost the rest of the call, as pure functions (no clock, no I/O).
 *
 * The rule: a recording never holds back the transcript and the lead, which sales needs within
 * minutes. So every way a recording can be unusable ends the call `partial` (the call data is
 * posted with the recording fields `null`) with a reason from `MissingRecordingReason`, never
 * `failed`:
 *
 * - The egress gave no file: it failed or aborted without one, never started, or was not final
 *   within the egress deadline.
 * - The file cannot be used: missing, not Ogg, outside the recordings root, refused by the
 *   storage, or the store stayed unreachable. Errors of the recording's source (codes
 *   `RECORDING_*` and `STORAGE_*`) get the retry policy's fast lane only
 *   (`RECORDING_SOURCE_MAX_ATTEMPTS`, 7 attempts, about 8 s of waits): enough for a store that shows an
 *   object a moment late or a blip, while a storage outage, which says nothing about the CRM,
 *   does not park the call data for days.
 * - The CRM refused the upload with a non-retryable answer (401, 413, a 200 without a URL …),
 *   or its retries ran out; or the upload step itself broke (`internal_error`, a bug). A CRM that is down for `/upload` is usually down for `/call-data`
 *   too, so its retryable answers keep the whole retry schedule: the recording is worth waiting
 *   for while the CRM could not take the call data either.
 *
 * A FAILED egress that still reports a file (livekit/egress uploads what it recorded before a
 * pipeline failure) delivers that file: `hasUsableFile`.
 *
 * Each upload attempt's deadline grows with the recording's size
 * (`RECORDING_MIN_UPLOAD_BYTES_PER_SECOND`): a fixed deadline cuts a long recording on a slow
 * CRM link at the same byte on every attempt, so it could never succeed.
 */
import type { ErrorInfo } from '../errors.ts';
import type { DeliveryStep, EgressFile, EgressSettlement } from './call.types.ts';
import { FAST_LANE_DELAYS_MS } from './retry-policy.ts';

/** The first attempt plus the fast lane's retries. */
export const RECORDING_SOURCE_MAX_ATTEMPTS = 1 + FAST_LANE_DELAYS_MS.length;

/**
 * The slowest CRM upload we still wait for: 256 KiB/s is a congested uplink or a CRM that
 * scans uploads; an 89 MiB (about five hours of Opus voice) file then gets about six minutes.
 */
export const RECORDING_MIN_UPLOAD_BYTES_PER_SECOND = 256 * 1024;

export type MissingRecordingReason =
  | 'egress_failed'
  | 'egress_aborted'
  | 'egress_not_started'
  | 'egress_timed_out'
  | 'file_missing'
  | 'file_not_ogg'
  | 'file_outside_root'
  | 'storage_refused'
  | 'storage_unavailable'
  | 'crm_refused'
  | 'crm_unavailable'
  | 'internal_error';

/** Every reason, for metric label values and tests. */
export const MISSING_RECORDING_REASONS: readonly MissingRecordingReason[] = [
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
];

/** An error of the recording's source (volume or store), not of the CRM. */
export function isRecordingSourceError(error: Pick<ErrorInfo, 'code'>): boolean {
  // `RECORDING_…` and `RECORDINGS_DIR_MISSING` alike.
  return error.code.startsWith('RECORDING') || error.code.startsWith('STORAGE_');
}

/** How many attempts a delivery step gets for this error (`maxAttempts` is the step's own cap). */
export function maxAttemptsFor(
  step: DeliveryStep,
  error: Pick<ErrorInfo, 'code'>,
  maxAttempts: number,
): number {
  return step === 'recording' && isRecordingSourceError(error)
    ? Math.min(maxAttempts, RECORDING_SOURCE_MAX_ATTEMPTS)
    : maxAttempts;
}

/** A file an egress in this final status reported that is worth uploading. */
export function hasUsableFile(
  status: EgressSettlement['status'],
  file: EgressFile | null | undefined,
): boolean {
  if (file === null || file === undefined || file.filename === '') return false;
  if (status === 'complete' || status === 'limit_reached') return true;
  // FAILED egresses name their planned file from the start; only an upload makes it real.
  return status === 'failed' && (file.location !== '' || (file.sizeBytes ?? 0) > 0);
}

/** Why a settled egress gave nothing to upload (its status had no usable file). */
export function missingReasonOfSettlement(settlement: EgressSettlement): MissingRecordingReason {
  switch (settlement.status) {
    case 'aborted':
      return 'egress_aborted';
    case 'not_started':
      return 'egress_not_started';
    case 'timed_out':
      return 'egress_timed_out';
    case 'failed':
      return 'egress_failed';
    case 'complete':
    case 'limit_reached':
      // Final with no file at all: nothing was stored where LiveKit said.
      return 'file_missing';
  }
}

const REASON_BY_CODE: Readonly<Record<string, MissingRecordingReason>> = {
  RECORDING_NO_PATH: 'file_missing',
  RECORDING_NOT_FOUND: 'file_missing',
  RECORDING_NOT_A_FILE: 'file_not_ogg',
  RECORDING_INVALID: 'file_not_ogg',
  RECORDING_SIZE_MISMATCH: 'file_not_ogg',
  RECORDING_OUTSIDE_ROOT: 'file_outside_root',
  RECORDING_CHANGED: 'file_outside_root',
  RECORDINGS_DIR_MISSING: 'file_missing',
  STORAGE_ACCESS_DENIED: 'storage_refused',
};

/** Why the recording step gave up with this error. */
export function missingReasonOfError(error: ErrorInfo): MissingRecordingReason {
  const known = REASON_BY_CODE[error.code];
  if (known !== undefined) return known;
  if (isRecordingSourceError(error)) return 'storage_unavailable';
  // An attempt the CRM did not answer within its deadline is the CRM being unavailable too.
  if (error.code === 'ATTEMPT_TIMEOUT') return 'crm_unavailable';
  if (error.code.startsWith('CRM_')) return error.retryable ? 'crm_unavailable' : 'crm_refused';
  return 'internal_error';
}

/** The deadline of one upload attempt for a recording of `sizeBytes` (unknown: the base only). */
export function recordingAttemptTimeoutMs(baseMs: number, sizeBytes: number | undefined): number {
  const size = sizeBytes !== undefined && Number.isFinite(sizeBytes) && sizeBytes > 0 ? sizeBytes : 0;
  return baseMs + Math.ceil((size / RECORDING_MIN_UPLOAD_BYTES_PER_SECOND) * 1000);
}
