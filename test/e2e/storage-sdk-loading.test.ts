/**
 * A bucket store's SDK is loaded on its first use, never by the others (the loading policy in
 * `src/services/storage/recording-storage.ts`): a shared-volume deployment delivers a call with
 * none of them loaded, and an S3 deployment loads the S3 SDK only. Which modules a callsync
 * process loaded is read from a trace its own loader writes (`test/helpers/module-trace.js`).
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { CHILD_WAIT_MS, spawnCallsync } from '../helpers/child-callsync.ts';
import { startChildPipeline } from '../helpers/child-pipeline.ts';
import { freePort } from '../helpers/free-port.ts';

const WAIT = { timeoutMs: CHILD_WAIT_MS };
const TRACE_HOOK = fileURLToPath(new URL('../helpers/module-trace.js', import.meta.url));
const BUCKET_SDKS = ['@aws-sdk/client-s3', '@azure/storage-blob', '@google-cloud/storage'] as const;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function traceFile(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'callsync-trace-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return join(dir, 'modules.txt');
}

/** The packages (under node_modules) whose modules the trace lists. */
function packagesIn(file: string): Set<string> {
  const packages = new Set<string>();
  for (const url of readFileSync(file, 'utf8').split('\n')) {
    const at = url.lastIndexOf('/node_modules/');
    if (at < 0) continue;
    const [scope, name] = url.slice(at + '/node_modules/'.length).split('/');
    if (scope) packages.add(scope.startsWith('@') ? `${scope}/${name}` : scope);
  }
  return packages;
}

describe('bucket SDKs', () => {
  it('a shared-volume deployment delivers a call with no bucket SDK loaded', async () => {
    const trace = await traceFile();
    const p = await startChildPipeline({
      env: { CALLSYNC_TEST_MODULE_TRACE: trace },
      nodeArgs: ['--import', TRACE_HOOK],
    });
    cleanups.push(() => p.close());
    await p.start();
    const call = await p.openCall('sdk-local');
    await p.endCall(call);
    const delivered = await p.crm.waitForCallData(call.callId, WAIT);
    expect(delivered.document.callDetails.recordingUrl).toEqual(expect.stringMatching(/^https?:\/\//));

    const loaded = packagesIn(trace);
    // The trace works: the packages every start loads are in it.
    expect(loaded).toContain('fastify');
    expect(loaded).toContain('livekit-server-sdk');
    for (const sdk of BUCKET_SDKS) expect(loaded, sdk).not.toContain(sdk);
  });

  it('an S3 deployment loads the S3 SDK, and neither the Azure nor the Google one', async () => {
    const trace = await traceFile();
    const dir = await mkdtemp(join(tmpdir(), 'callsync-s3-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const port = await freePort();
    const child = spawnCallsync({
      nodeArgs: ['--import', TRACE_HOOK],
      env: {
        CALLSYNC_TEST_MODULE_TRACE: trace,
        LIVEKIT_URL: 'http://127.0.0.1:1',
        LIVEKIT_API_KEY: 'APIkey',
        LIVEKIT_API_SECRET: 'a-livekit-secret-long-enough-for-hs256-signing',
        CRM_BASE_URL: 'http://127.0.0.1:1',
        CALLSYNC_HOST: '127.0.0.1',
        CALLSYNC_PORT: String(port),
        CALLSYNC_STORE: `sqlite:${join(dir, 'callsync.db')}`,
        CALLSYNC_EGRESS_STORAGE: 's3',
        CALLSYNC_S3_BUCKET: 'recordings',
        // Nothing listens there: the start-up check fails, is logged, and callsync starts anyway.
        CALLSYNC_S3_ENDPOINT: 'http://127.0.0.1:1',
        CALLSYNC_S3_FORCE_PATH_STYLE: 'true',
        CALLSYNC_S3_ACCESS_KEY_ID: 'S3RVER',
        CALLSYNC_S3_SECRET_ACCESS_KEY: 'S3RVER',
        LOG_LEVEL: 'info',
      },
    });
    cleanups.push(async () => void (await child.kill()));
    await child.waitForLog((line) => line.msg === 'recording storage not reachable at start');
    await child.waitForLog((line) => line.msg === 'callsync listening');

    const loaded = packagesIn(trace);
    expect(loaded).toContain('@aws-sdk/client-s3');
    expect(loaded).not.toContain('@azure/storage-blob');
    expect(loaded).not.toContain('@google-cloud/storage');
  });
});
