import { Readable } from 'node:stream';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, type Dispatcher } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CRM_ERROR_CODES,
  CrmError,
  createCrmClient,
  type CrmClient,
  type CrmClientOptions,
  type CrmRequestInfo,
} from '../../src/services/crm.client.ts';
import type { CrmStatusFault } from '../../src/sandbox/crm/index.ts';
import { CAN_INSPECT_FDS, openDescriptorsOn } from '../helpers/crm-fds.ts';
import {
  makeCallData,
  makeRecording,
  recordingBody,
  startSandbox,
  type Recording,
  type SandboxHarness,
} from '../helpers/crm-fixtures.ts';

const API_KEY = 'sk-live-3f9a1c-do-not-leak';

let harness: SandboxHarness;
let recording: Recording;
let requests: CrmRequestInfo[];
const cleanups: (() => Promise<void>)[] = [];

beforeEach(async () => {
  harness = await startSandbox({ apiKey: API_KEY });
  cleanups.push(harness.cleanup);
  recording = await makeRecording(harness.dir, 'recordings/room-1-1761732000.ogg', 5);
  requests = [];
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function client(options: Partial<CrmClientOptions> = {}): CrmClient {
  const crm = createCrmClient({
    baseUrl: harness.url,
    apiKey: API_KEY,
    onRequest: (info) => requests.push(info),
    ...options,
  });
  cleanups.push(() => crm.close());
  return crm;
}

/** What the onRequest hook saw, as [endpoint, code] pairs. */
function requestSummary(): [string, string][] {
  return requests.map((info) => [info.endpoint, info.code]);
}

/** The settled error of `promise`, which must reject with a CrmError. */
async function failure(promise: Promise<unknown>): Promise<CrmError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(CrmError);
  return error as CrmError;
}

async function upload(crm: CrmClient, callId = 'call-1') {
  return crm.uploadRecording({ callId, recording: await recordingBody(recording.path) });
}

function postCallData(crm: CrmClient, callId = 'call-1') {
  return crm.postCallData({ callId, document: makeCallData(callId) });
}

/** Everything about an error that could end up in a log line or the call record. */
function everythingIn(error: CrmError): string {
  return JSON.stringify({
    message: error.message,
    details: error.details,
    cause: String(error.cause),
    stack: error.stack,
  });
}

describe('uploadRecording', () => {
  it('streams the recording as multipart with Content-Length, the idempotency key and the bearer key', async () => {
    const crm = client();

    const result = await upload(crm, 'call-1');

    const stored = await harness.sandbox.waitForUpload('call-1:recording');
    expect(result).toEqual({ url: stored.url, status: 201, sizeBytes: recording.sizeBytes });
    expect(stored).toMatchObject({
      fileName: 'room-1-1761732000.ogg',
      contentType: 'audio/ogg',
      sizeBytes: recording.sizeBytes,
      sha256: recording.sha256,
      chunked: false,
    });
    // The multipart envelope around the file, announced up front rather than chunked.
    expect(stored.contentLength).toBeGreaterThan(recording.sizeBytes);
    expect(stored.contentLength).toBeLessThan(recording.sizeBytes + 1024);
    expect(harness.sandbox.received().rejected).toEqual([]);
    expect(requestSummary()).toEqual([['upload', '201']]);
    expect(requests[0]!.durationSeconds).toBeGreaterThanOrEqual(0);
  });

  it('uses the given file name', async () => {
    await client().uploadRecording({
      callId: 'call-2',
      recording: await recordingBody(recording.path, 'call-2.ogg'),
    });

    expect((await harness.sandbox.waitForUpload('call-2:recording')).fileName).toBe('call-2.ogg');
  });

  it.each([
    { urlField: 'url', underData: false, status: 201 },
    { urlField: 'fileUrl', underData: false, status: 200 },
    { urlField: 'location', underData: true, status: 201 },
    { urlField: 'fileUrl', underData: true, status: 200 },
  ] as const)('reads the URL from $urlField (under data: $underData, HTTP $status)', async (shape) => {
    harness = await startSandbox({ uploadAnswer: shape, publicBaseUrl: 'https://crm.example.test' });
    cleanups.push(harness.cleanup);

    const result = await upload(client({ apiKey: undefined }));

    expect(result.status).toBe(shape.status);
    expect(result.url).toMatch(/^https:\/\/crm\.example\.test\/files\/.+-room-1-1761732000\.ogg$/);
  });

  it.each<{ name: string; fault: CrmStatusFault }>([
    { name: 'a relative URL', fault: { status: 201, body: { url: '/files/a.ogg' } } },
    { name: 'no URL', fault: { status: 201, body: { success: true, data: { id: 'a' } } } },
    {
      name: 'a non-http URL',
      fault: { status: 200, body: { data: { fileUrl: 'ftp://crm.example.test/a.ogg' } } },
    },
    { name: 'no JSON', fault: { status: 201, body: 'stored!' } },
  ])('fails with a non-retryable CRM_BAD_RESPONSE on a 2xx with $name', async ({ fault }) => {
    harness.sandbox.injectFaults('upload', [fault]);

    const error = await failure(upload(client()));

    expect(error).toMatchObject({
      code: CRM_ERROR_CODES.BAD_RESPONSE,
      retryable: false,
      status: fault.status,
    });
    expect(error.details?.body).toBe(
      typeof fault.body === 'string' ? fault.body : JSON.stringify(fault.body),
    );
    expect(requests.map((info) => info.code)).toEqual([String(fault.status)]);
  });

  it('fails with a retryable RECORDING_READ_FAILED when the recording breaks while being sent', async () => {
    const { sizeBytes } = await recordingBody(recording.path);
    const halfThenBroken = Readable.from(
      (function* () {
        yield Buffer.alloc(1024, 1); // less than the announced length
        throw new Error('store connection reset');
      })(),
    );

    const error = await failure(
      client().uploadRecording({
        callId: 'call-3',
        recording: { body: halfThenBroken, sizeBytes, fileName: 'call-3.ogg' },
      }),
    );

    expect(error).toMatchObject({ code: 'RECORDING_READ_FAILED', retryable: true });
    expect(error.message).toContain('store connection reset');
    expect(halfThenBroken.destroyed).toBe(true);
    expect(
      harness.sandbox.received().uploads.find((u) => u.idempotencyKey === 'call-3:recording'),
    ).toBeUndefined();
  });

  it.runIf(CAN_INSPECT_FDS)('reads the file progressively: a stalled CRM stalls the reading', async () => {
    const big = await makeRecording(harness.dir, 'recordings/long.ogg', 24_000); // ~60 MiB
    harness.sandbox.injectFaults('upload', [{ hang: true }]);
    let readWhenTimedOut: { fd: number; position: number }[] = [];
    const crm = client({
      requestTimeoutMs: 500,
      uploadMinBytesPerSecond: Number.POSITIVE_INFINITY,
      // Called when the request ends, before the client closes the file: the read offset then
      // is how much of the file was pulled while the CRM read nothing.
      onRequest: () => {
        readWhenTimedOut = openDescriptorsOn(big.path);
      },
    });

    const error = await failure(
      crm.uploadRecording({ callId: 'call-4', recording: await recordingBody(big.path) }),
    );

    expect(error.code).toBe(CRM_ERROR_CODES.TIMEOUT);
    expect(readWhenTimedOut).toHaveLength(1);
    expect(readWhenTimedOut[0]!.position).toBeLessThan(big.sizeBytes / 2);
  });
});

describe('postCallData', () => {
  it('posts the document as JSON with the idempotency key and the bearer key', async () => {
    const result = await postCallData(client(), 'call-5');

    const stored = await harness.sandbox.waitForCallData('call-5');
    expect(stored).toMatchObject({ idempotencyKey: 'call-5:call-data', document: makeCallData('call-5') });
    expect(result).toMatchObject({ status: 201, body: { success: true, data: { callId: 'call-5' } } });
    expect(requestSummary()).toEqual([['call_data', '201']]);
    expect(requests[0]!.durationSeconds).toBeGreaterThanOrEqual(0);
  });

  it('returns a text answer as text and an empty one as null', async () => {
    harness.sandbox.injectFaults('call-data', [
      { status: 200, body: 'ok' },
      { status: 202, body: '' },
    ]);
    const crm = client();

    expect(await postCallData(crm)).toEqual({ status: 200, body: 'ok' });
    expect(await postCallData(crm)).toEqual({ status: 202, body: null });
  });
});

describe('error classification', () => {
  const retryAfterDate = () => new Date(Date.now() + 120_000).toUTCString();

  it.each<{ status: number; code: string; retryable: boolean; headers?: () => Record<string, string> }>([
    { status: 408, code: CRM_ERROR_CODES.REQUEST_TIMEOUT, retryable: true },
    { status: 500, code: CRM_ERROR_CODES.SERVER_ERROR, retryable: true },
    { status: 502, code: CRM_ERROR_CODES.SERVER_ERROR, retryable: true },
    { status: 503, code: CRM_ERROR_CODES.SERVER_ERROR, retryable: true },
    { status: 400, code: CRM_ERROR_CODES.REJECTED, retryable: false },
    { status: 401, code: CRM_ERROR_CODES.REJECTED, retryable: false },
    { status: 404, code: CRM_ERROR_CODES.REJECTED, retryable: false },
    { status: 422, code: CRM_ERROR_CODES.REJECTED, retryable: false },
  ])(
    'HTTP $status → $code, retryable: $retryable, on both endpoints',
    async ({ status, code, retryable }) => {
      const body = { error: 'crm_says_no', status };
      harness.sandbox.injectFaults('upload', [{ status, body }]);
      harness.sandbox.injectFaults('call-data', [{ status, body }]);
      const crm = client();

      const errors = [await failure(upload(crm)), await failure(postCallData(crm))];

      for (const [index, error] of errors.entries()) {
        expect(error).toMatchObject({
          code,
          retryable,
          status,
          retryAfterMs: undefined,
          details: { endpoint: index === 0 ? 'upload' : 'call_data', body: JSON.stringify(body) },
        });
      }
      expect(requests.map((info) => [info.endpoint, info.code])).toEqual([
        ['upload', String(status)],
        ['call_data', String(status)],
      ]);
    },
  );

  it('429 with Retry-After in seconds → retryable CRM_RATE_LIMITED with retryAfterMs', async () => {
    harness.sandbox.injectFaults('upload', [{ status: 429, retryAfterSeconds: 7 }]);

    const error = await failure(upload(client()));

    expect(error).toMatchObject({
      code: CRM_ERROR_CODES.RATE_LIMITED,
      retryable: true,
      status: 429,
      retryAfterMs: 7_000,
    });
  });

  it('429 with Retry-After as an HTTP-date → retryAfterMs until that date', async () => {
    harness.sandbox.injectFaults('call-data', [
      { status: 429, headers: { 'retry-after': retryAfterDate() } },
    ]);

    const error = await failure(postCallData(client()));

    expect(error).toMatchObject({ code: CRM_ERROR_CODES.RATE_LIMITED, retryable: true });
    // The date has whole seconds and was made just before the request: 119-120 s away.
    expect(error.retryAfterMs).toBeGreaterThan(100_000);
    expect(error.retryAfterMs).toBeLessThanOrEqual(120_000);
  });

  it('503 with Retry-After → retryable with retryAfterMs', async () => {
    harness.sandbox.injectFaults('call-data', [{ status: 503, retryAfterSeconds: 30 }]);

    const error = await failure(postCallData(client()));

    expect(error).toMatchObject({
      code: CRM_ERROR_CODES.SERVER_ERROR,
      retryable: true,
      retryAfterMs: 30_000,
    });
  });

  it('no answer in time (hang) → retryable CRM_TIMEOUT, on both endpoints', async () => {
    harness.sandbox.injectFaults('upload', [{ hang: true }]);
    harness.sandbox.injectFaults('call-data', [{ hang: true, afterProcessing: true }]);
    const crm = client({ requestTimeoutMs: 200 });

    const errors = [await failure(upload(crm)), await failure(postCallData(crm, 'call-6'))];

    for (const error of errors)
      expect(error).toMatchObject({ code: CRM_ERROR_CODES.TIMEOUT, retryable: true });
    expect(requests.map((info) => info.code)).toEqual([CRM_ERROR_CODES.TIMEOUT, CRM_ERROR_CODES.TIMEOUT]);
    // The document was stored before the answer was lost: the retry is what idempotency is for.
    expect(harness.sandbox.received().callData.map((item) => item.callId)).toEqual(['call-6']);
  });

  it('a slow answer within the deadline succeeds; beyond it, CRM_TIMEOUT', async () => {
    harness.sandbox.injectFaults('call-data', [{ delayMs: 50 }, { delayMs: 60_000 }]);
    harness.sandbox.injectFaults('upload', [{ delayMs: 50 }]);
    const crm = client({ requestTimeoutMs: 5_000 });
    const impatient = client({ requestTimeoutMs: 200 });

    expect((await postCallData(crm, 'call-7')).status).toBe(201);
    expect((await upload(crm, 'call-7')).status).toBe(201);
    expect((await failure(postCallData(impatient, 'call-8'))).code).toBe(CRM_ERROR_CODES.TIMEOUT);
  });

  it('connection reset → retryable CRM_NETWORK_ERROR, on both endpoints', async () => {
    harness.sandbox.injectFaults('upload', [{ reset: true }]);
    harness.sandbox.injectFaults('call-data', [{ reset: true }]);
    const crm = client();

    const errors = [await failure(upload(crm)), await failure(postCallData(crm))];

    for (const error of errors) {
      expect(error).toMatchObject({
        code: CRM_ERROR_CODES.NETWORK_ERROR,
        retryable: true,
        status: undefined,
      });
    }
    expect(requests.map((info) => info.code)).toEqual([
      CRM_ERROR_CODES.NETWORK_ERROR,
      CRM_ERROR_CODES.NETWORK_ERROR,
    ]);
  });

  it('connection refused → retryable CRM_NETWORK_ERROR', async () => {
    const gone = await startSandbox();
    await gone.cleanup();
    const crm = client({ baseUrl: gone.url });

    const errors = [await failure(upload(crm)), await failure(postCallData(crm))];

    for (const error of errors) {
      expect(error).toMatchObject({ code: CRM_ERROR_CODES.NETWORK_ERROR, retryable: true });
      expect(String(error.details?.cause)).toMatch(/ECONNREFUSED/);
    }
  });

  it("the caller's abort → CRM_ABORTED (retryable: the CRM may not have it)", async () => {
    harness.sandbox.injectFaults('upload', [{ hang: true }]);
    const controller = new AbortController();
    const pending = client().uploadRecording({
      callId: 'call-9',
      recording: await recordingBody(recording.path),
      signal: controller.signal,
    });
    await harness.sandbox.waitForRequests('upload', 1);

    controller.abort();

    expect(await failure(pending)).toMatchObject({ code: CRM_ERROR_CODES.ABORTED, retryable: true });
  });

  it('keeps a long CRM answer in details, cut to a few KiB', async () => {
    harness.sandbox.injectFaults('call-data', [{ status: 400, body: 'x'.repeat(100_000) }]);

    const error = await failure(postCallData(client()));

    const body = String(error.details?.body);
    expect(body.startsWith('x'.repeat(4096))).toBe(true);
    expect(body).toMatch(/… \[95904 more bytes\]$/);
  });
});

describe('the API key', () => {
  it('is sent (the sandbox requires it) and a wrong one is a non-retryable 401', async () => {
    const wrong = client({ apiKey: 'not-the-key' });
    const none = client({ apiKey: undefined });

    expect(await failure(upload(wrong))).toMatchObject({
      code: CRM_ERROR_CODES.REJECTED,
      status: 401,
      retryable: false,
    });
    expect(await failure(postCallData(none))).toMatchObject({ code: CRM_ERROR_CODES.REJECTED, status: 401 });
    expect((await postCallData(client())).status).toBe(201);
  });

  it('never appears in errors, even when the CRM echoes it back', async () => {
    const echo = { error: 'bad_request', echoedHeaders: { authorization: `Bearer ${API_KEY}` } };
    harness.sandbox.injectFaults('upload', [{ status: 400, body: echo }, { reset: true }, { hang: true }]);
    harness.sandbox.injectFaults('call-data', [{ status: 503, body: `upstream said: ${API_KEY}` }]);
    const crm = client({ requestTimeoutMs: 200 });
    const refused = await startSandbox();
    await refused.cleanup();

    const errors = [
      await failure(upload(crm)),
      await failure(upload(crm)),
      await failure(upload(crm)),
      await failure(postCallData(crm)),
      await failure(postCallData(client({ baseUrl: refused.url }))),
      await failure(
        crm.uploadRecording({
          callId: 'x',
          recording: {
            body: new Readable({
              read() {
                this.destroy(new Error('unreadable'));
              },
            }),
            sizeBytes: 10,
            fileName: 'nope.ogg',
          },
        }),
      ),
    ];

    for (const error of errors) expect(everythingIn(error)).not.toContain(API_KEY);
    expect(errors[0]!.details?.body).toContain('Bearer [REDACTED]');
    expect(errors[3]!.details?.body).toBe('upstream said: [REDACTED]');
  });
});

describe('idempotent retries', () => {
  it('a retry after a lost acknowledgement gets the first answer and stores nothing twice', async () => {
    harness.sandbox.injectFaults('upload', [{ reset: true, afterProcessing: true }]);
    harness.sandbox.injectFaults('call-data', [{ status: 502, afterProcessing: true }]);
    const crm = client();

    const lostUpload = await failure(upload(crm, 'call-10'));
    const uploaded = await upload(crm, 'call-10');
    const lostCallData = await failure(postCallData(crm, 'call-10'));
    const posted = await postCallData(crm, 'call-10');

    expect([lostUpload.retryable, lostCallData.retryable]).toEqual([true, true]);
    expect(posted.status).toBe(201);
    const received = harness.sandbox.received();
    expect(received.uploads).toHaveLength(1);
    expect(uploaded.url).toBe(received.uploads[0]!.url);
    expect(received.callData).toHaveLength(1);
    expect(received.duplicates).toEqual({ upload: 1, 'call-data': 1 });
  });
});

describe('file descriptors', () => {
  it.runIf(CAN_INSPECT_FDS)('closes the recording after every outcome', async () => {
    harness.sandbox.injectFaults('upload', [
      { reset: true },
      { hang: true },
      { status: 500 },
      { status: 201, body: {} },
    ]);
    const crm = client({ requestTimeoutMs: 200 });
    const refused = await startSandbox();
    await refused.cleanup();
    const offline = client({ baseUrl: refused.url });
    const controller = new AbortController();
    controller.abort();

    const outcomes = [
      await upload(crm).then(
        () => 'ok',
        (error: CrmError) => error.code,
      ),
      await upload(crm).then(
        () => 'ok',
        (error: CrmError) => error.code,
      ),
      await upload(crm).then(
        () => 'ok',
        (error: CrmError) => error.code,
      ),
      await upload(crm).then(
        () => 'ok',
        (error: CrmError) => error.code,
      ),
      await upload(offline).then(
        () => 'ok',
        (error: CrmError) => error.code,
      ),
      await crm
        .uploadRecording({
          callId: 'c',
          recording: await recordingBody(recording.path),
          signal: controller.signal,
        })
        .then(
          () => 'ok',
          (error: CrmError) => error.code,
        ),
      await upload(crm).then(
        () => 'ok',
        (error: CrmError) => error.code,
      ),
    ];

    expect(outcomes).toEqual([
      CRM_ERROR_CODES.NETWORK_ERROR,
      CRM_ERROR_CODES.TIMEOUT,
      CRM_ERROR_CODES.SERVER_ERROR,
      CRM_ERROR_CODES.BAD_RESPONSE,
      CRM_ERROR_CODES.NETWORK_ERROR,
      CRM_ERROR_CODES.ABORTED,
      'ok',
    ]);
    expect(openDescriptorsOn(recording.path)).toEqual([]);
  });
});

describe('lifecycle and dispatcher', () => {
  it('sends through an injected dispatcher and leaves it open on close()', async () => {
    const dispatched: string[] = [];
    const agent = new Agent();
    cleanups.push(() => agent.close());
    const counting = agent.compose((dispatch: Dispatcher['dispatch']) => (options, handler) => {
      dispatched.push(String(options.path));
      return dispatch(options, handler);
    });
    const crm = client({ dispatcher: counting });

    await upload(crm, 'call-11');
    await postCallData(crm, 'call-11');
    await crm.close();

    expect(dispatched).toEqual(['/upload', '/call-data']);
    expect((await postCallData(client({ dispatcher: agent }), 'call-12')).status).toBe(201);
  });

  it('close() is safe twice, and a closed client refuses work', async () => {
    const crm = client();
    await postCallData(crm);

    await crm.close();
    await crm.close();

    expect(await failure(postCallData(crm))).toMatchObject({ code: CRM_ERROR_CODES.CLIENT_CLOSED });
    expect(await failure(upload(crm))).toMatchObject({ code: CRM_ERROR_CODES.CLIENT_CLOSED });
  });

  it('refuses a base URL that is not http(s) at construction', () => {
    expect(() => createCrmClient({ baseUrl: 'ftp://crm.example.test' })).toThrow(TypeError);
    expect(() => createCrmClient({ baseUrl: 'not a url' })).toThrow(TypeError);
  });

  it('a throwing onRequest hook does not fail the request', async () => {
    const crm = client({
      onRequest: () => {
        throw new Error('metrics broke');
      },
    });

    expect((await postCallData(crm)).status).toBe(201);
  });
});

describe('a base URL with a path', () => {
  it('appends /upload and /call-data to it', async () => {
    const tmp = await mkdtemp(join(tmpdir(), 'callsync-crm-path-'));
    cleanups.push(() => rm(tmp, { recursive: true, force: true }));
    const crm = client({ baseUrl: `${harness.url}/apis/api/public/` });

    const error = await failure(postCallData(crm));

    // The sandbox serves the root only, so the path must have been kept: 404 proves it was sent there.
    expect(error).toMatchObject({ code: CRM_ERROR_CODES.REJECTED, status: 404 });
    expect(error.details?.body).toContain('/apis/api/public/call-data');
  });
});
