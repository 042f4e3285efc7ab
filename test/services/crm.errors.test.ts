import { describe, expect, it } from 'vitest';
import {
  CRM_ERROR_CODES,
  errorForStatus,
  parseRetryAfterMs,
  redactSecrets,
  truncateUtf8,
} from '../../src/services/crm.errors.ts';
import { fileUrlFromAnswer } from '../../src/services/crm.client.ts';

/** 2025-10-29T10:00:00Z */
const REFERENCE_MS = Date.UTC(2025, 9, 29, 10, 0, 0);

describe('parseRetryAfterMs', () => {
  it.each([
    { value: '0', expected: 0 },
    { value: '7', expected: 7_000 },
    { value: ' 120 ', expected: 120_000 },
    { value: 'Wed, 29 Oct 2025 10:00:30 GMT', expected: 30_000 },
    { value: 'Wed, 29 Oct 2025 09:59:00 GMT', expected: 0 },
    { value: '1.5', expected: undefined },
    { value: '-3', expected: undefined },
    { value: 'soon', expected: undefined },
    { value: '', expected: undefined },
    { value: null, expected: undefined },
    { value: undefined, expected: undefined },
  ])('$value → $expected', ({ value, expected }) => {
    expect(parseRetryAfterMs(value, REFERENCE_MS)).toBe(expected);
  });
});

describe('errorForStatus', () => {
  it.each([
    { status: 408, code: CRM_ERROR_CODES.REQUEST_TIMEOUT, retryable: true },
    { status: 429, code: CRM_ERROR_CODES.RATE_LIMITED, retryable: true },
    { status: 500, code: CRM_ERROR_CODES.SERVER_ERROR, retryable: true },
    { status: 504, code: CRM_ERROR_CODES.SERVER_ERROR, retryable: true },
    { status: 400, code: CRM_ERROR_CODES.REJECTED, retryable: false },
    { status: 403, code: CRM_ERROR_CODES.REJECTED, retryable: false },
    { status: 409, code: CRM_ERROR_CODES.REJECTED, retryable: false },
    { status: 413, code: CRM_ERROR_CODES.REJECTED, retryable: false },
    { status: 302, code: CRM_ERROR_CODES.BAD_RESPONSE, retryable: false },
  ])('HTTP $status → $code (retryable: $retryable)', ({ status, code, retryable }) => {
    const error = errorForStatus('upload', { status, body: '{"error":"x"}', retryAfter: '3' }, REFERENCE_MS);
    expect(error).toMatchObject({
      code,
      retryable,
      status,
      details: { endpoint: 'upload', body: '{"error":"x"}' },
    });
    expect(error.retryAfterMs).toBe(retryable ? 3_000 : undefined);
  });
});

describe('redactSecrets and truncateUtf8', () => {
  it('replaces every occurrence of each secret', () => {
    expect(redactSecrets('Bearer k3y and k3y again; pw', ['k3y', undefined, 'pw', ''])).toBe(
      'Bearer [REDACTED] and [REDACTED] again; [REDACTED]',
    );
  });

  it('keeps short text and cuts long text on a character boundary, saying how much was cut', () => {
    expect(truncateUtf8('short', 10)).toBe('short');
    expect(truncateUtf8('ééééé', 5)).toBe('éé… [6 more bytes]');
  });
});

describe('fileUrlFromAnswer', () => {
  it.each([
    { body: '{"url":"https://crm.test/f/1.ogg"}', expected: 'https://crm.test/f/1.ogg' },
    { body: '{"fileUrl":"http://crm.test/f/2.ogg"}', expected: 'http://crm.test/f/2.ogg' },
    { body: '{"location":"https://crm.test/f/3.ogg"}', expected: 'https://crm.test/f/3.ogg' },
    {
      body: '{"success":true,"data":{"url":"https://crm.test/f/4.ogg"}}',
      expected: 'https://crm.test/f/4.ogg',
    },
    { body: '{"data":{"fileUrl":"https://crm.test/f/5.ogg"}}', expected: 'https://crm.test/f/5.ogg' },
    { body: '{"data":{"location":"https://crm.test/f/6.ogg"}}', expected: 'https://crm.test/f/6.ogg' },
    {
      body: '{"url":"/relative.ogg","data":{"url":"https://crm.test/f/7.ogg"}}',
      expected: 'https://crm.test/f/7.ogg',
    },
    { body: '{"url":"/relative.ogg"}', expected: undefined },
    { body: '{"url":"ftp://crm.test/f.ogg"}', expected: undefined },
    { body: '{"url":42}', expected: undefined },
    { body: '{"id":"abc"}', expected: undefined },
    { body: '"https://crm.test/f.ogg"', expected: undefined },
    { body: 'null', expected: undefined },
    { body: 'not json', expected: undefined },
  ])('$body → $expected', ({ body, expected }) => {
    expect(fileUrlFromAnswer(body)).toBe(expected);
  });
});
