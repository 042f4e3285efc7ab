/**
 * Memory bench for the recording upload: `npm run bench`.
 *
 * Claim under test: the CRM client streams a recording, from disk or from a bucket, so the
 * memory an upload needs does not grow with the file: uploading a ~200 MB recording raises peak
 * RSS by less than 50 MiB over the client's baseline. The same claim is checked for the CRM
 * sandbox receiving it. Two phases, one after the other in the same client process, each read
 * as the supervisor reads a recording (`RecordingStorage.open` then `crm.uploadRecording`):
 * - local: the shared-volume store (`LocalRecordingStorage`) over a temp directory;
 * - S3: the S3 store (`createRecordingStorage({ storage: { kind: 's3', … } })`) over s3rver.
 *
 * Set-up, so that each number belongs to one side only:
 * - the recordings (real Ogg Opus: ~200 MB, ~22 h of speech at the fixture's bitrate, and a
 *   ~50 MB warm-up one) are written by a child process in a fresh temp dir, removed at the end;
 * - s3rver runs in another child process (its temp directory inside that same temp dir), is
 *   seeded there with the same two files and reports its endpoint, bucket and keys over IPC;
 * - the CRM sandbox runs in a third child process, samples its own RSS and reports it;
 * - this process runs only the recording stores' clients and the CRM client, and samples its
 *   RSS every 20 ms.
 *
 * Baseline, per phase: the client first uploads the 50 MB recording three times through that
 * phase's store, and the baseline is the RSS after that. A fresh Node process pays a one-time
 * cost during its first ~100 MB of streaming whatever the file sizes: V8 grows its young
 * generation and collects dead 64 KiB read buffers lazily (it waits for ~32 MB of them), which
 * measures 45-70 MiB on Node 20 on loopback and then stays flat over any number of uploads.
 * That figure is printed as "first uploads" but is not what the claim is about; the S3 phase
 * warms up again because its read path (the AWS SDK's HTTP handler) is not the local one. A
 * client that buffered whole files would still fail here: the measured file is four times the
 * warm-up one, so it would need >= 150 MB more than anything the warm-up left behind. The
 * stored copy is checked by sha256 against the generated file.
 *
 * What the growth is, once warm: dead read buffers awaiting V8's next collection, a sawtooth
 * that repeats every ~15 MB streamed (a dozen collections per 200 MB), so its height does not
 * depend on the file size; the "ArrayBuffers" row shows that memory at the baseline and at the
 * peak. The measured figure depends on where in that sawtooth the baseline falls. Through S3
 * the sawtooth is taller than from disk (about 30-45 MiB of ArrayBuffers at its top against
 * about 13 MiB: each HTTP body chunk is a fresh buffer), so the S3 figure ranges from ~0 to the
 * mid-40s MiB from run to run; from disk it stays at ~0-20 MiB.
 *
 * Everything listens on 127.0.0.1; every wait on a child is bounded (`CHILD_STEP_TIMEOUT_MS`).
 * Exit code 1 on any FAIL.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { writeOggOpusRecording } from '../src/audio/ogg-opus.ts';
import { createCrmSandbox, type ReceivedUpload } from '../src/sandbox/crm/index.ts';
import { createCrmClient, type CrmClient } from '../src/services/crm.client.ts';
import {
  LocalRecordingStorage,
  createRecordingStorage,
  type RecordingStorage,
} from '../src/services/storage/index.ts';

/** ≈ 208 MB at the speech fixture's ~2.6 kB/s. */
const RECORDING_DURATION_SECONDS = 80_000;
/** ≈ 52 MB: a quarter of the measured file. */
const WARM_UP_DURATION_SECONDS = 20_000;
const WARM_UP_UPLOADS = 3;
const RSS_SAMPLE_INTERVAL_MS = 20;
const MIB = 1024 * 1024;
const MAX_RSS_GROWTH_BYTES = 50 * MIB;
/** The longest any one child step may take (writing the recordings, seeding s3rver, …). */
const CHILD_STEP_TIMEOUT_MS = 5 * 60_000;
/** After "close", how long a child may take to exit before it is killed. */
const CHILD_EXIT_GRACE_MS = 10_000;
const RECORDING_NAME = 'bench-call.ogg';
const WARM_UP_NAME = 'warm-up.ogg';
/** Object keys in the bucket: a prefix, as an egress filepath template would give. */
const S3_KEY_PREFIX = 'bench/';

interface S3Endpoint {
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

type ChildMessage =
  | { kind: 'generated'; path: string; sizeBytes: number; sha256: string; durationSeconds: number }
  | { kind: 'listening'; url: string }
  | { kind: 's3-ready'; server: S3Endpoint }
  | { kind: 'measuring' }
  | { kind: 'report'; baselineRssBytes: number; peakRssBytes: number; uploads: ReceivedUpload[] };

type ParentMessage = { kind: 'measure' } | { kind: 'report' } | { kind: 'close' };

/**
 * Peak RSS of this process between `start()` and `stop()`, sampled on an interval and at both
 * ends; `arrayBuffersAtPeak` is the ArrayBuffer memory in the sample that had the peak.
 */
function rssSampler() {
  let peak = 0;
  let arrayBuffersAtPeak = 0;
  let timer: NodeJS.Timeout | undefined;
  const sample = () => {
    const { rss, arrayBuffers } = process.memoryUsage();
    if (rss <= peak) return;
    peak = rss;
    arrayBuffersAtPeak = arrayBuffers;
  };
  return {
    start() {
      peak = 0;
      sample();
      timer = setInterval(sample, RSS_SAMPLE_INTERVAL_MS);
    },
    stop(): number {
      clearInterval(timer);
      sample();
      return peak;
    },
    get arrayBuffersAtPeak() {
      return arrayBuffersAtPeak;
    },
  };
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function send(message: ChildMessage): Promise<void> {
  return new Promise((resolve, reject) =>
    process.send!(message, (error: Error | null) => (error ? reject(error) : resolve())),
  );
}

/** Child role: write the recordings and describe them. */
async function generate(specs: string[]): Promise<void> {
  for (const spec of specs) {
    const [path, durationSeconds] = spec.split('=') as [string, string];
    const written = await writeOggOpusRecording(path, { durationSeconds: Number(durationSeconds) });
    await send({ kind: 'generated', path, ...written, sha256: await sha256Of(path) });
  }
}

/** Child role: run the sandbox; measure between each "measure" and the next "report". */
async function serveSandbox(storageDir: string): Promise<void> {
  const sampler = rssSampler();
  const sandbox = createCrmSandbox({ storageDir, maxUploadBytes: 1024 * MIB });
  const { url } = await sandbox.start();
  let baselineRssBytes = 0;
  let closing: Promise<void> | undefined;
  const close = () => (closing ??= sandbox.close());
  process.on('message', (message: ParentMessage) => {
    if (message.kind === 'measure') {
      baselineRssBytes = process.memoryUsage.rss();
      sampler.start();
      void send({ kind: 'measuring' });
    } else if (message.kind === 'report') {
      const peakRssBytes = sampler.stop();
      void send({ kind: 'report', baselineRssBytes, peakRssBytes, uploads: sandbox.received().uploads });
    } else if (message.kind === 'close') {
      void close().then(() => process.disconnect());
    }
  });
  // The bench process went away without saying "close": stop listening so this process ends.
  process.once('disconnect', () => void close());
  await send({ kind: 'listening', url });
}

/**
 * Child role: run s3rver, seed it with `key=path` files, report where it listens. Its own
 * memory (the server, the seeding client) stays in this process.
 */
async function serveS3(specs: string[]): Promise<void> {
  // Imported here only, so neither s3rver nor the test helpers load in the measured process.
  const { putS3Object, startS3rver } = await import('../test/helpers/storage-servers.ts');
  const server = await startS3rver();
  const close = () => server.close(); // memoized by the helper: safe twice
  process.once('disconnect', () => void close());
  try {
    for (const spec of specs) {
      const [key, path] = spec.split('=') as [string, string];
      await putS3Object(server, key, path);
    }
  } catch (error) {
    await close();
    throw error;
  }
  process.on('message', (message: ParentMessage) => {
    if (message.kind === 'close') void close().then(() => process.disconnect());
  });
  const { endpoint, bucket, region, accessKeyId, secretAccessKey } = server;
  await send({ kind: 's3-ready', server: { endpoint, bucket, region, accessKeyId, secretAccessKey } });
}

function startChild(args: string[], env?: NodeJS.ProcessEnv): ChildProcess {
  // fork() passes on our execArgv (`--import tsx`), so the child runs this same file.
  return fork(fileURLToPath(import.meta.url), args, { stdio: 'inherit', ...(env ? { env } : {}) });
}

function nextMessage<K extends ChildMessage['kind']>(
  child: ChildProcess,
  kind: K,
): Promise<Extract<ChildMessage, { kind: K }>> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: ChildMessage) => {
      if (message.kind !== kind) return;
      cleanup();
      resolve(message as Extract<ChildMessage, { kind: K }>);
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`bench child exited (${code}) before sending "${kind}"`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`bench child sent no "${kind}" within ${CHILD_STEP_TIMEOUT_MS} ms`));
    }, CHILD_STEP_TIMEOUT_MS);
    const cleanup = () => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

/** Asks a child to close and waits for it to exit; kills it if it takes longer than the grace. */
async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const killer = setTimeout(() => child.kill('SIGKILL'), CHILD_EXIT_GRACE_MS);
  if (child.connected) child.send({ kind: 'close' } satisfies ParentMessage);
  else child.kill();
  await exited;
  clearTimeout(killer);
}

interface PhaseResult {
  status: number;
  seconds: number;
  /** RSS before this phase's warm-up, and its peak during the warm-up. */
  warmUpFromRssBytes: number;
  warmUpPeakRssBytes: number;
  baselineRssBytes: number;
  peakRssBytes: number;
  baselineArrayBuffersBytes: number;
  peakArrayBuffersBytes: number;
  sandboxBaselineRssBytes: number;
  sandboxPeakRssBytes: number;
  stored: ReceivedUpload | undefined;
}

/** Warm up with `WARM_UP_UPLOADS` uploads of `warmUpName`, then measure one upload of `recordingName`. */
async function runPhase(options: {
  storage: RecordingStorage;
  client: CrmClient;
  sandboxChild: ChildProcess;
  callIdPrefix: string;
  warmUpName: string;
  recordingName: string;
  warmUpFromRssBytes: number;
}): Promise<PhaseResult> {
  const { storage, client, sandboxChild, callIdPrefix } = options;
  const upload = async (callId: string, filename: string) => {
    const opened = await storage.open({ filename, location: '' });
    try {
      return await client.uploadRecording({ callId, recording: opened });
    } finally {
      await opened.close();
    }
  };
  const sampler = rssSampler();

  sampler.start();
  for (let i = 0; i < WARM_UP_UPLOADS; i += 1) {
    await upload(`${callIdPrefix}-warm-up-${i}`, options.warmUpName);
  }
  const warmUpPeakRssBytes = sampler.stop();

  sandboxChild.send({ kind: 'measure' } satisfies ParentMessage);
  await nextMessage(sandboxChild, 'measuring');
  const { rss: baselineRssBytes, arrayBuffers: baselineArrayBuffersBytes } = process.memoryUsage();
  sampler.start();
  const startedMs = performance.now();
  const result = await upload(`${callIdPrefix}-call`, options.recordingName);
  const seconds = (performance.now() - startedMs) / 1000;
  const peakRssBytes = sampler.stop();

  sandboxChild.send({ kind: 'report' } satisfies ParentMessage);
  const sandbox = await nextMessage(sandboxChild, 'report');
  return {
    status: result.status,
    seconds,
    warmUpFromRssBytes: options.warmUpFromRssBytes,
    warmUpPeakRssBytes,
    baselineRssBytes,
    peakRssBytes,
    baselineArrayBuffersBytes,
    peakArrayBuffersBytes: sampler.arrayBuffersAtPeak,
    sandboxBaselineRssBytes: sandbox.baselineRssBytes,
    sandboxPeakRssBytes: sandbox.peakRssBytes,
    stored: sandbox.uploads.find((stored) => stored.idempotencyKey === `${callIdPrefix}-call:recording`),
  };
}

const mib = (bytes: number) => `${(bytes / MIB).toFixed(1)} MiB`;
const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');

async function main(): Promise<number> {
  const freshRssBytes = process.memoryUsage.rss();
  const dir = await mkdtemp(join(tmpdir(), 'callsync-bench-'));
  const recordingsDir = join(dir, 'recordings');
  let sandboxChild: ChildProcess | undefined;
  let s3Child: ChildProcess | undefined;
  let s3Storage: RecordingStorage | undefined;
  let client: CrmClient | undefined;
  try {
    console.log(`upload-memory bench: writing Ogg Opus recordings (~200 MB and ~50 MB) in ${dir}`);
    const generator = startChild([
      'generate',
      `${join(recordingsDir, RECORDING_NAME)}=${RECORDING_DURATION_SECONDS}`,
      `${join(recordingsDir, WARM_UP_NAME)}=${WARM_UP_DURATION_SECONDS}`,
    ]);
    const recording = await nextMessage(generator, 'generated');
    const warmUp = await nextMessage(generator, 'generated');

    console.log('upload-memory bench: seeding s3rver (child process) with the same two recordings');
    const s3rverTmp = join(dir, 's3rver');
    await mkdir(s3rverTmp);
    // s3rver's object directory goes under `dir` (TMPDIR), so it is removed with it whatever happens.
    s3Child = startChild(
      [
        's3',
        `${S3_KEY_PREFIX}${RECORDING_NAME}=${recording.path}`,
        `${S3_KEY_PREFIX}${WARM_UP_NAME}=${warmUp.path}`,
      ],
      { ...process.env, TMPDIR: s3rverTmp },
    );
    const { server: s3 } = await nextMessage(s3Child, 's3-ready');

    sandboxChild = startChild(['sandbox', join(dir, 'crm')]);
    const { url } = await nextMessage(sandboxChild, 'listening');
    client = createCrmClient({ baseUrl: url });

    console.log('upload-memory bench: local phase (shared-volume store → CRM sandbox)');
    const local = await runPhase({
      storage: new LocalRecordingStorage({ recordingsDir }),
      client,
      sandboxChild,
      callIdPrefix: 'bench-local',
      warmUpName: WARM_UP_NAME,
      recordingName: RECORDING_NAME,
      warmUpFromRssBytes: freshRssBytes,
    });

    console.log(
      `upload-memory bench: S3 phase (s3rver at ${s3.endpoint}, bucket ${s3.bucket} → CRM sandbox)`,
    );
    const beforeS3RssBytes = process.memoryUsage.rss();
    s3Storage = createRecordingStorage({
      storage: {
        kind: 's3',
        bucket: s3.bucket,
        region: s3.region,
        endpoint: s3.endpoint,
        forcePathStyle: true,
        accessKeyId: s3.accessKeyId,
        secretAccessKey: s3.secretAccessKey,
        sessionToken: undefined,
      },
      sendToEgress: true,
    });
    const viaS3 = await runPhase({
      storage: s3Storage,
      client,
      sandboxChild,
      callIdPrefix: 'bench-s3',
      warmUpName: `${S3_KEY_PREFIX}${WARM_UP_NAME}`,
      recordingName: `${S3_KEY_PREFIX}${RECORDING_NAME}`,
      warmUpFromRssBytes: beforeS3RssBytes,
    });

    const checks = (phase: PhaseResult) => {
      const clientGrowth = phase.peakRssBytes - phase.baselineRssBytes;
      const sandboxGrowth = phase.sandboxPeakRssBytes - phase.sandboxBaselineRssBytes;
      return {
        clientGrowth,
        sandboxGrowth,
        clientOk: clientGrowth < MAX_RSS_GROWTH_BYTES,
        sandboxOk: sandboxGrowth < MAX_RSS_GROWTH_BYTES,
        intact: phase.stored?.sha256 === recording.sha256 && phase.stored.sizeBytes === recording.sizeBytes,
      };
    };
    const phases = [
      { name: 'local file', phase: local, ...checks(local) },
      { name: `S3 (s3rver)`, phase: viaS3, ...checks(viaS3) },
    ];
    const row = (label: string, cell: (p: (typeof phases)[number]) => string) =>
      `${label.padEnd(24)}${phases.map((p) => cell(p).padEnd(26)).join('')}`.trimEnd();
    const hours = (recording.durationSeconds / 3600).toFixed(1);
    const lines = [
      '',
      `file size               ${recording.sizeBytes} bytes (${mib(recording.sizeBytes)}, ${hours} h of Ogg Opus), ` +
        `sha256 ${recording.sha256.slice(0, 16)}…`,
      `limit                   peak RSS growth < ${mib(MAX_RSS_GROWTH_BYTES)} over the post-warm-up baseline`,
      '',
      row('', (p) => p.name),
      row('bytes uploaded', (p) => String(p.phase.stored?.sizeBytes ?? 'none stored')),
      row('upload', (p) => `HTTP ${p.phase.status} in ${p.phase.seconds.toFixed(2)} s`),
      row('throughput', (p) => `${(recording.sizeBytes / MIB / p.phase.seconds).toFixed(1)} MiB/s`),
      row('client RSS baseline', (p) => mib(p.phase.baselineRssBytes)),
      row('client RSS peak', (p) => mib(p.phase.peakRssBytes)),
      row('client peak growth', (p) => `${mib(p.clientGrowth)}  ${verdict(p.clientOk)}`),
      row(
        '  ArrayBuffers',
        (p) => `${mib(p.phase.baselineArrayBuffersBytes)} → ${mib(p.phase.peakArrayBuffersBytes)}`,
      ),
      row('sandbox RSS baseline', (p) => mib(p.phase.sandboxBaselineRssBytes)),
      row('sandbox RSS peak', (p) => mib(p.phase.sandboxPeakRssBytes)),
      row('sandbox peak growth', (p) => `${mib(p.sandboxGrowth)}  ${verdict(p.sandboxOk)}`),
      row('stored copy (sha256)', (p) => `${p.intact ? 'identical' : 'DIFFERENT'}  ${verdict(p.intact)}`),
      row('first uploads from', (p) => mib(p.phase.warmUpFromRssBytes)),
      row(`  peak in ${WARM_UP_UPLOADS} x ${mib(warmUp.sizeBytes)}`, (p) => {
        const growth = p.phase.warmUpPeakRssBytes - p.phase.warmUpFromRssBytes;
        return `${mib(p.phase.warmUpPeakRssBytes)} (${growth < 0 ? '' : '+'}${mib(growth)})`;
      }),
      '',
      '"first uploads": the warm-up before each baseline (local: from the fresh client process; S3: from',
      'the end of the local phase); a one-time runtime sizing, not part of the claim (see the header).',
    ];
    const ok = phases.every((p) => p.clientOk && p.sandboxOk && p.intact);
    console.log(`${lines.join('\n')}\n\n${verdict(ok)}`);
    return ok ? 0 : 1;
  } finally {
    await s3Storage?.close();
    await client?.close();
    await Promise.all([stopChild(sandboxChild), stopChild(s3Child)]);
    await rm(dir, { recursive: true, force: true });
  }
}

const [role, ...args] = process.argv.slice(2);
if (role === 'generate') {
  await generate(args);
} else if (role === 'sandbox') {
  await serveSandbox(args[0]!);
} else if (role === 's3') {
  await serveS3(args);
} else {
  process.exitCode = await main();
}
