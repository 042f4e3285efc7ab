import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CrmSandboxReceived } from '../../src/sandbox/crm/index.ts';
import {
  makeCallData,
  makeRecording,
  multipartBody,
  rawRequest,
  sha256File,
  startSandbox,
  type SandboxHarness,
} from '../helpers/crm-fixtures.ts';

let harness: SandboxHarness;
let recordingBytes: Buffer;
let recordingSha256: string;

const cleanups: (() => Promise<void>)[] = [];
beforeEach(async () => {
  harness = await startSandbox();
  cleanups.push(harness.cleanup);
  const recording = await makeRecording(harness.dir, 'fixtures/call-1.ogg', 5);
  recordingBytes = await readFile(recording.path);
  recordingSha256 = recording.sha256;
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

function uploadRequest(url: string, headers: Record<string, string> = {}, fileName = 'call-1.ogg') {
  const { body, contentType } = multipartBody([
    { name: 'file', fileName, contentType: 'audio/ogg', data: recordingBytes },
  ]);
  return rawRequest(`${url}/upload`, {
    method: 'POST',
    headers: { 'content-type': contentType, ...headers },
    body,
  });
}

function callDataRequest(url: string, document: unknown, headers: Record<string, string> = {}) {
  return rawRequest(`${url}/call-data`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(document),
  });
}

describe('POST /upload', () => {
  it('streams the file to disk byte for byte and serves it back', async () => {
    const answer = await uploadRequest(harness.url, { 'idempotency-key': 'call-1:recording' });

    expect(answer.status).toBe(201);
    const { url } = answer.json as { url: string };
    expect(url).toMatch(new RegExp(`^${harness.url}/files/[0-9a-f-]{36}-call-1\\.ogg$`));
    const [upload] = harness.sandbox.received().uploads;
    expect(upload).toMatchObject({
      idempotencyKey: 'call-1:recording',
      fileName: 'call-1.ogg',
      contentType: 'audio/ogg',
      sizeBytes: recordingBytes.length,
      sha256: recordingSha256,
      url,
      chunked: false,
    });
    expect(await sha256File(upload!.path)).toBe(recordingSha256);

    const served = await request(url);
    expect(served.statusCode).toBe(200);
    expect(served.headers['content-type']).toBe('audio/ogg');
    expect(Buffer.from(await served.body.arrayBuffer()).equals(recordingBytes)).toBe(true);
  });

  it.each([
    { urlField: 'url', underData: false, status: 201 },
    { urlField: 'fileUrl', underData: false, status: 200 },
    { urlField: 'location', underData: false, status: 201 },
    { urlField: 'url', underData: true, status: 200 },
    { urlField: 'fileUrl', underData: true, status: 201 },
    { urlField: 'location', underData: true, status: 201 },
  ] as const)('answers $status with the URL in $urlField (under data: $underData)', async (shape) => {
    const shaped = await startSandbox({ uploadAnswer: shape, publicBaseUrl: 'https://crm.example.test/' });
    cleanups.push(shaped.cleanup);

    const answer = await uploadRequest(shaped.url);

    expect(answer.status).toBe(shape.status);
    const holder = (shape.underData ? (answer.json as { data: unknown }).data : answer.json) as Record<
      string,
      unknown
    >;
    expect(holder[shape.urlField]).toMatch(/^https:\/\/crm\.example\.test\/files\/[^/]+-call-1\.ogg$/);
    expect(Object.keys(holder)).not.toContain(shape.urlField === 'url' ? 'fileUrl' : 'url');
  });

  it('refuses a request without a "file" part with a JSON 400 and stores nothing', async () => {
    const { body, contentType } = multipartBody([
      { name: 'recording', fileName: 'call-1.ogg', contentType: 'audio/ogg', data: recordingBytes },
      { name: 'callId', data: 'call-1' },
    ]);
    const answer = await rawRequest(`${harness.url}/upload`, {
      method: 'POST',
      headers: { 'content-type': contentType },
      body,
    });

    expect(answer.status).toBe(400);
    expect(answer.json).toMatchObject({ error: 'missing_file' });
    const received = harness.sandbox.received();
    expect(received.uploads).toEqual([]);
    expect(received.rejected).toMatchObject([{ endpoint: 'upload', status: 400, error: 'missing_file' }]);
    expect(await readdir(join(harness.dir, 'crm', 'uploads'))).toEqual([]);
  });

  it('refuses a body that is not multipart with 415', async () => {
    const answer = await rawRequest(`${harness.url}/upload`, {
      method: 'POST',
      headers: { 'content-type': 'audio/ogg' },
      body: recordingBytes,
    });

    expect(answer.status).toBe(415);
    expect(answer.json).toMatchObject({ error: 'unsupported_media_type' });
  });

  it('refuses a file over maxUploadBytes with 413 and keeps no partial file', async () => {
    const small = await startSandbox({ maxUploadBytes: 1000 });
    cleanups.push(small.cleanup);

    const answer = await uploadRequest(small.url);

    expect(answer.status).toBe(413);
    expect(answer.json).toMatchObject({ error: 'file_too_large' });
    expect(small.sandbox.received().uploads).toEqual([]);
    expect(await readdir(join(small.dir, 'crm', 'uploads'))).toEqual([]);
  });

  it('answers 404 for unknown files and names that try to leave the uploads directory', async () => {
    expect((await rawRequest(`${harness.url}/files/nope.ogg`)).status).toBe(404);
    expect((await rawRequest(`${harness.url}/files/..%2F..%2Fcall-data`)).status).toBe(404);
    expect((await rawRequest(`${harness.url}/files/%E0%A4%A`)).status).toBe(404);
  });
});

describe('POST /call-data', () => {
  it('accepts and stores a valid document', async () => {
    const document = makeCallData('call-7', { recordingUrl: 'https://crm.example.test/files/a.ogg' });

    const answer = await callDataRequest(harness.url, document, { 'idempotency-key': 'call-7:call-data' });

    expect(answer.status).toBe(201);
    expect(answer.json).toMatchObject({ success: true, data: { callId: 'call-7' } });
    const stored = await harness.sandbox.waitForCallData('call-7');
    expect(stored).toMatchObject({ idempotencyKey: 'call-7:call-data', document });
    const files = await readdir(join(harness.dir, 'crm', 'call-data'));
    expect(files).toHaveLength(1);
    expect(JSON.parse(await readFile(join(harness.dir, 'crm', 'call-data', files[0]!), 'utf8'))).toEqual(
      document,
    );
  });

  it('refuses an invalid document with 400 naming the field, and stores nothing', async () => {
    const document = makeCallData('call-8') as unknown as { callDetails: Record<string, unknown> };
    delete document.callDetails.callId;
    document.callDetails.direction = 'sideways';

    const answer = await callDataRequest(harness.url, document);

    expect(answer.status).toBe(400);
    const body = answer.json as { error: string; message: string; issues: { path: string }[] };
    expect(body.error).toBe('validation_failed');
    expect(body.issues.map((issue) => issue.path).sort()).toEqual([
      'callDetails.callId',
      'callDetails.direction',
    ]);
    expect(body.message).toContain('callDetails.callId');
    expect(harness.sandbox.received().callData).toEqual([]);
    expect(harness.sandbox.received().rejected).toMatchObject([{ endpoint: 'call-data', status: 400 }]);
  });

  it('refuses malformed JSON with 400 and a non-JSON content type with 415', async () => {
    const malformed = await rawRequest(`${harness.url}/call-data`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"campaignId": ',
    });
    const wrongType = await rawRequest(`${harness.url}/call-data`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: JSON.stringify(makeCallData('call-9')),
    });

    expect(malformed.status).toBe(400);
    expect(malformed.json).toMatchObject({ error: 'invalid_json' });
    expect(wrongType.status).toBe(415);
  });

  it('refuses a body over maxJsonBytes with 413', async () => {
    const small = await startSandbox({ maxJsonBytes: 100 });
    cleanups.push(small.cleanup);

    const answer = await callDataRequest(small.url, makeCallData('call-10'));

    expect(answer.status).toBe(413);
    expect(small.sandbox.received().callData).toEqual([]);
  });
});

describe('idempotency keys', () => {
  it('replays the first answer to a repeated upload key, counts it and stores one file', async () => {
    const first = await uploadRequest(harness.url, { 'idempotency-key': 'call-1:recording' });
    const again = await uploadRequest(harness.url, { 'idempotency-key': 'call-1:recording' });

    expect(again.status).toBe(first.status);
    expect(again.json).toEqual(first.json);
    expect(again.headers['idempotent-replayed']).toBe('true');
    const received = harness.sandbox.received();
    expect(received.uploads).toHaveLength(1);
    expect(received.duplicates).toEqual({ upload: 1, 'call-data': 0 });
    expect(received.duplicateRequests).toEqual([
      { endpoint: 'upload', idempotencyKey: 'call-1:recording', concurrent: false, status: 201 },
    ]);
    expect(await readdir(join(harness.dir, 'crm', 'uploads'))).toHaveLength(1);
  });

  it('keeps keys per endpoint and stores requests without a key every time', async () => {
    await callDataRequest(harness.url, makeCallData('call-2'), { 'idempotency-key': 'same' });
    const other = await uploadRequest(harness.url, { 'idempotency-key': 'same' });
    await uploadRequest(harness.url);
    await uploadRequest(harness.url);

    expect(other.status).toBe(201);
    const received = harness.sandbox.received();
    expect(received.uploads).toHaveLength(3);
    expect(received.callData).toHaveLength(1);
    expect(received.duplicates).toEqual({ upload: 0, 'call-data': 0 });
  });

  it('does not keep refusals: a corrected request with the same key is handled', async () => {
    const invalid = { ...makeCallData('call-3'), campaignId: '' };
    const refused = await callDataRequest(harness.url, invalid, { 'idempotency-key': 'call-3:call-data' });
    const corrected = await callDataRequest(harness.url, makeCallData('call-3'), {
      'idempotency-key': 'call-3:call-data',
    });

    expect(refused.status).toBe(400);
    expect(corrected.status).toBe(201);
    expect(harness.sandbox.received().duplicates['call-data']).toBe(0);
  });

  it('makes duplicates that arrive while the first is in flight wait for its answer', async () => {
    const { body, contentType } = multipartBody([
      { name: 'file', fileName: 'call-4.ogg', contentType: 'audio/ogg', data: recordingBytes },
    ]);
    const headers = { 'content-type': contentType, 'idempotency-key': 'call-4:recording' };
    // The first request's body is held open, so it is still being handled when the others arrive.
    const slowBody = new PassThrough();
    const first = rawRequest(`${harness.url}/upload`, {
      method: 'POST',
      headers: { ...headers, 'content-length': String(body.length) },
      body: slowBody,
    });
    slowBody.write(body.subarray(0, 1000));
    await harness.sandbox.waitForRequests('upload', 1);
    const duplicates = [1, 2, 3].map(() =>
      rawRequest(`${harness.url}/upload`, { method: 'POST', headers, body }),
    );
    await harness.sandbox.waitForRequests('upload', 4);
    expect(harness.sandbox.received().uploads).toEqual([]);
    slowBody.end(body.subarray(1000));

    const answers = await Promise.all([first, ...duplicates]);

    expect(answers.map((answer) => answer.status)).toEqual([201, 201, 201, 201]);
    for (const answer of answers) expect(answer.json).toEqual(answers[0]?.json);
    const received = harness.sandbox.received();
    expect(received.uploads).toHaveLength(1);
    expect(received.uploads[0]!.sha256).toBe(recordingSha256);
    expect(received.duplicates.upload).toBe(3);
    expect(received.duplicateRequests.every((duplicate) => duplicate.concurrent)).toBe(true);
    expect(await readdir(join(harness.dir, 'crm', 'uploads'))).toHaveLength(1);
  });

  it('handles a waiting duplicate itself when the first request dies without storing', async () => {
    const { body, contentType } = multipartBody([
      { name: 'file', fileName: 'call-5.ogg', contentType: 'audio/ogg', data: recordingBytes },
    ]);
    const headers = { 'content-type': contentType, 'idempotency-key': 'call-5:recording' };
    const slowBody = new PassThrough();
    const first = request(`${harness.url}/upload`, {
      method: 'POST',
      headers: { ...headers, 'content-length': String(body.length) },
      body: slowBody,
    });
    slowBody.write(body.subarray(0, 1000));
    await harness.sandbox.waitForRequests('upload', 1);
    const duplicate = rawRequest(`${harness.url}/upload`, { method: 'POST', headers, body });
    await harness.sandbox.waitForRequests('upload', 2);
    slowBody.destroy(new Error('client gave up'));
    await expect(first).rejects.toThrow();

    const answer = await duplicate;

    expect(answer.status).toBe(201);
    const received = harness.sandbox.received();
    expect(received.uploads).toHaveLength(1);
    expect(received.duplicates.upload).toBe(0);
  });

  it('does not let a request whose client left during a delay fault hold its key', async () => {
    // A sender that gave up (timed out, or was killed) while the CRM was slow; its retry comes later.
    harness.sandbox.injectFaults('upload', [{ delayMs: 300 }, { delayMs: 300 }]);
    const { body, contentType } = multipartBody([
      { name: 'file', fileName: 'call-7.ogg', contentType: 'audio/ogg', data: recordingBytes },
    ]);
    const headers = { 'content-type': contentType, 'idempotency-key': 'call-7:recording' };
    const giveUp = new AbortController();
    const gaveUp = request(`${harness.url}/upload`, { method: 'POST', headers, body, signal: giveUp.signal });
    await harness.sandbox.waitForRequests('upload', 1);
    giveUp.abort();
    await expect(gaveUp).rejects.toMatchObject({ name: 'AbortError' });
    // Delays of equal length end in arrival order: once this one is answered, the sandbox has
    // already taken up the abandoned request.
    expect((await uploadRequest(harness.url, { 'idempotency-key': 'call-8:recording' })).status).toBe(201);

    const retry = await request(`${harness.url}/upload`, {
      method: 'POST',
      headers,
      body,
      headersTimeout: 5_000,
    });

    expect(retry.statusCode).toBe(201);
    await retry.body.dump();
    const received = harness.sandbox.received();
    expect(received.uploads.map((upload) => upload.idempotencyKey)).toEqual([
      'call-8:recording',
      'call-7:recording',
    ]);
    expect(received.duplicates.upload).toBe(0);
  });

  it('replays concurrent call-data duplicates and stores the document once', async () => {
    const document = makeCallData('call-6');
    const answers = await Promise.all(
      [1, 2, 3, 4, 5].map(() =>
        callDataRequest(harness.url, document, { 'idempotency-key': 'call-6:call-data' }),
      ),
    );

    expect(new Set(answers.map((answer) => JSON.stringify([answer.status, answer.json]))).size).toBe(1);
    const received = harness.sandbox.received();
    expect(received.callData).toHaveLength(1);
    expect(received.duplicates['call-data']).toBe(4);
  });
});

describe('fault injection', () => {
  it('answers queued statuses in order, one per request, then handles requests normally', async () => {
    harness.sandbox.injectFaults('call-data', [
      { status: 503 },
      { status: 500, body: 'database on fire' },
      { status: 422, body: { error: 'custom' }, headers: { 'x-crm-trace': 'abc' } },
    ]);
    expect(harness.sandbox.pendingFaults()).toEqual({ upload: 0, 'call-data': 3 });
    const document = makeCallData('call-11');

    const answers = [];
    for (let i = 0; i < 4; i += 1) answers.push(await callDataRequest(harness.url, document));

    expect(answers.map((answer) => answer.status)).toEqual([503, 500, 422, 201]);
    expect(answers[0]!.json).toMatchObject({ error: 'injected_fault' });
    expect(answers[1]!.text).toBe('database on fire');
    expect(answers[2]!.json).toEqual({ error: 'custom' });
    expect(answers[2]!.headers['x-crm-trace']).toBe('abc');
    const received = harness.sandbox.received();
    expect(received.callData).toHaveLength(1);
    expect(received.requests['call-data']).toBe(4);
    expect(received.faults.map((applied) => applied.fault)).toEqual([
      { status: 503 },
      { status: 500, body: 'database on fire' },
      { status: 422, body: { error: 'custom' }, headers: { 'x-crm-trace': 'abc' } },
    ]);
    expect(harness.sandbox.pendingFaults()['call-data']).toBe(0);
  });

  it('keeps fault queues per endpoint', async () => {
    harness.sandbox.injectFaults('upload', [{ status: 502 }]);

    const callData = await callDataRequest(harness.url, makeCallData('call-12'));
    const upload = await uploadRequest(harness.url);

    expect(callData.status).toBe(201);
    expect(upload.status).toBe(502);
  });

  it('sets Retry-After on a 429 fault, from seconds or as given', async () => {
    const date = new Date(Date.now() + 120_000).toUTCString();
    harness.sandbox.injectFaults('upload', [
      { status: 429, retryAfterSeconds: 7 },
      { status: 429, headers: { 'retry-after': date } },
    ]);

    const seconds = await uploadRequest(harness.url);
    const httpDate = await uploadRequest(harness.url);

    expect(seconds.status).toBe(429);
    expect(seconds.headers['retry-after']).toBe('7');
    expect(httpDate.headers['retry-after']).toBe(date);
  });

  it('hangs: the request gets no answer at all', async () => {
    harness.sandbox.injectFaults('call-data', [{ hang: true }]);

    const pending = request(`${harness.url}/call-data`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(makeCallData('call-13')),
      headersTimeout: 200,
    });

    await expect(pending).rejects.toMatchObject({ code: 'UND_ERR_HEADERS_TIMEOUT' });
    expect(harness.sandbox.received().callData).toEqual([]);
  });

  it('resets the connection', async () => {
    harness.sandbox.injectFaults('upload', [{ reset: true }]);

    const error = await uploadRequest(harness.url).then(
      () => undefined,
      (caught: unknown) => caught as { code?: string },
    );

    expect(['ECONNRESET', 'UND_ERR_SOCKET']).toContain(error?.code);
    expect(harness.sandbox.received().uploads).toEqual([]);
  });

  it('delays an answer, then handles the request normally', async () => {
    harness.sandbox.injectFaults('call-data', [{ delayMs: 60_000 }, { delayMs: 20 }]);

    // A long delay outlasts a short client deadline...
    const tooSlow = request(`${harness.url}/call-data`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(makeCallData('call-14')),
      headersTimeout: 200,
    });
    await expect(tooSlow).rejects.toMatchObject({ code: 'UND_ERR_HEADERS_TIMEOUT' });
    expect(harness.sandbox.received().callData).toEqual([]);
    // ...and a short one is answered as usual.
    const answer = await callDataRequest(harness.url, makeCallData('call-15'));

    expect(answer.status).toBe(201);
    expect(harness.sandbox.received().callData.map((item) => item.callId)).toEqual(['call-15']);
  });

  it('afterProcessing: stores the request, loses the answer, and replays the real answer to a retry', async () => {
    harness.sandbox.injectFaults('call-data', [{ status: 503, afterProcessing: true }]);
    harness.sandbox.injectFaults('upload', [{ reset: true, afterProcessing: true }]);
    const headers = { 'idempotency-key': 'call-16:call-data' };

    const lost = await callDataRequest(harness.url, makeCallData('call-16'), headers);
    const retried = await callDataRequest(harness.url, makeCallData('call-16'), headers);
    await expect(uploadRequest(harness.url, { 'idempotency-key': 'call-16:recording' })).rejects.toThrow();
    const uploadRetry = await uploadRequest(harness.url, { 'idempotency-key': 'call-16:recording' });

    expect(lost.status).toBe(503);
    expect(retried.status).toBe(201);
    expect(uploadRetry.status).toBe(201);
    const received = harness.sandbox.received();
    expect(received.callData).toHaveLength(1);
    expect(received.uploads).toHaveLength(1);
    expect((uploadRetry.json as { url: string }).url).toBe(received.uploads[0]!.url);
    expect(received.duplicates).toEqual({ upload: 1, 'call-data': 1 });
  });

  it('refuses malformed faults', () => {
    expect(() => harness.sandbox.injectFaults('upload', [{ status: 99 }])).toThrow();
    expect(() => harness.sandbox.injectFaults('upload', [{ hang: false } as never])).toThrow();
    expect(harness.sandbox.pendingFaults()).toEqual({ upload: 0, 'call-data': 0 });
  });

  it('takes fault scripts over HTTP', async () => {
    const queued = await rawRequest(`${harness.url}/_sandbox/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        endpoint: 'upload',
        faults: [{ status: 500 }, { status: 429, retryAfterSeconds: 2 }],
      }),
    });
    const invalid = await rawRequest(`${harness.url}/_sandbox/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ endpoint: 'nowhere', faults: [{ explode: true }] }),
    });

    expect(queued.status).toBe(200);
    expect(queued.json).toEqual({ pending: { upload: 2, 'call-data': 0 } });
    expect(invalid.status).toBe(400);
    expect(invalid.json).toMatchObject({ error: 'invalid_fault_script' });
    expect((await uploadRequest(harness.url)).status).toBe(500);
    expect((await rawRequest(`${harness.url}/_sandbox/faults`)).json).toEqual({
      pending: { upload: 1, 'call-data': 0 },
    });
    await rawRequest(`${harness.url}/_sandbox/faults`, { method: 'DELETE' });
    expect((await uploadRequest(harness.url)).status).toBe(201);
  });
});

describe('auth', () => {
  it('requires the bearer key on the CRM routes only, and never echoes what was sent', async () => {
    const locked = await startSandbox({ apiKey: 'crm-test-key' });
    cleanups.push(locked.cleanup);
    const document = makeCallData('call-17');

    const missing = await callDataRequest(locked.url, document);
    const wrong = await callDataRequest(locked.url, document, { authorization: 'Bearer guessed-key-123' });
    const wrongUpload = await uploadRequest(locked.url, { authorization: 'crm-test-key' });
    const right = await callDataRequest(locked.url, document, { authorization: 'Bearer crm-test-key' });
    const readOut = await rawRequest(`${locked.url}/_sandbox/received`);

    expect([missing.status, wrong.status, wrongUpload.status, right.status]).toEqual([401, 401, 401, 201]);
    expect(wrong.json).toMatchObject({ error: 'unauthorized' });
    expect(wrong.text).not.toContain('guessed-key-123');
    expect(readOut.status).toBe(200);
    const received = readOut.json as CrmSandboxReceived;
    expect(received.callData).toHaveLength(1);
    expect(received.uploads).toHaveLength(0);
    expect(received.rejected.map((rejection) => [rejection.endpoint, rejection.status])).toEqual([
      ['call-data', 401],
      ['call-data', 401],
      ['upload', 401],
    ]);
  });
});

describe('read-out', () => {
  it('serves the same read-out over HTTP as programmatically, and forgets it on reset', async () => {
    harness.sandbox.injectFaults('upload', [{ status: 500 }]);
    await uploadRequest(harness.url, { 'idempotency-key': 'k1' });
    await uploadRequest(harness.url, { 'idempotency-key': 'k1' });
    await uploadRequest(harness.url, { 'idempotency-key': 'k1' });
    await callDataRequest(harness.url, { nope: true });

    const overHttp = await rawRequest(`${harness.url}/_sandbox/received`);

    expect(overHttp.json).toEqual(harness.sandbox.received());
    expect(overHttp.json).toMatchObject({
      requests: { upload: 3, 'call-data': 1 },
      duplicates: { upload: 1, 'call-data': 0 },
      rejected: [{ endpoint: 'call-data', status: 400 }],
      faults: [{ endpoint: 'upload', fault: { status: 500 }, idempotencyKey: 'k1' }],
    });
    expect((overHttp.json as CrmSandboxReceived).uploads).toHaveLength(1);

    const reset = await rawRequest(`${harness.url}/_sandbox/reset`, { method: 'POST' });
    expect(reset.status).toBe(200);
    expect(harness.sandbox.received()).toEqual({
      requests: { upload: 0, 'call-data': 0 },
      uploads: [],
      callData: [],
      duplicates: { upload: 0, 'call-data': 0 },
      duplicateRequests: [],
      rejected: [],
      faults: [],
    });
    // Reset forgets idempotency keys too.
    expect(
      (await uploadRequest(harness.url, { 'idempotency-key': 'k1' })).headers['idempotent-replayed'],
    ).toBe(undefined);
  });

  it('returns copies, not the live state', async () => {
    const before = harness.sandbox.received();
    await uploadRequest(harness.url);

    expect(before.uploads).toEqual([]);
    expect(harness.sandbox.received().uploads).toHaveLength(1);
  });

  it('waitFor helpers resolve on arrival, and time out or abort with a message', async () => {
    const callData = harness.sandbox.waitForCallData('call-18');
    const upload = harness.sandbox.waitForUpload('call-18:recording');
    const twoCalls = harness.sandbox.waitFor(
      (received) => received.callData.length >= 2 && received.callData,
    );

    await uploadRequest(harness.url, { 'idempotency-key': 'call-18:recording' });
    await callDataRequest(harness.url, makeCallData('call-17'));
    await callDataRequest(harness.url, makeCallData('call-18'));

    expect((await callData).callId).toBe('call-18');
    expect((await upload).sha256).toBe(recordingSha256);
    expect((await twoCalls).map((item) => item.callId)).toEqual(['call-17', 'call-18']);
    await expect(harness.sandbox.waitForCallData('never', { timeoutMs: 50 })).rejects.toThrow(
      /call data for never did not happen/,
    );
    await expect(harness.sandbox.waitForUpload('never', { signal: AbortSignal.abort() })).rejects.toThrow(
      /aborted/,
    );
  });
});

describe('lifecycle', () => {
  it('closes with a hanging request in flight, fails pending waits, and can be closed twice', async () => {
    const own = await startSandbox();
    cleanups.push(own.cleanup);
    own.sandbox.injectFaults('upload', [{ hang: true }]);
    const hanging = uploadRequest(own.url).then(
      () => 'answered',
      () => 'failed',
    );
    await own.sandbox.waitForRequests('upload', 1);
    const waiting = expect(own.sandbox.waitForCallData('never')).rejects.toThrow(/closed/);

    await own.sandbox.close();
    await own.sandbox.close();

    expect(await hanging).toBe('failed');
    await waiting;
    expect(() => own.sandbox.url).not.toThrow();
  });

  it('has no URL before start', async () => {
    const { createCrmSandbox } = await import('../../src/sandbox/crm/index.ts');
    const idle = createCrmSandbox({ storageDir: join(harness.dir, 'idle') });
    expect(() => idle.url).toThrow(/not started/);
    await idle.close();
  });
});
