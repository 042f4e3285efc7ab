/**
 * Memory bench for the recording upload: `npm run bench`.
 *
 * Claim under test: the CRM client streams a recording from disk, so the memory an upload needs
 * does not grow with the file: uploading a ~200 MB recording raises peak RSS by less than
 * 50 MiB over the client's baseline. The same claim is checked for the CRM sandbox receiving it.
 *
 * Set-up, so that each number belongs to one side only:
 * - the recordings (real Ogg Opus: ~200 MB, ~22 h of speech at the fixture's bitrate, and a
 *   ~50 MB warm-up one) are written by a child process in a fresh temp dir, removed at the end;
 * - the CRM sandbox runs in another child process, samples its own RSS and reports it;
 * - this process runs only the CRM client and samples its RSS every 20 ms.
 *
 * Baseline: the client first uploads the 50 MB recording three times, and the baseline is the
 * RSS after that. A fresh Node process pays a one-time cost during its first ~100 MB of
 * streaming whatever the file sizes: V8 grows its young generation and collects dead 64 KiB
 * read buffers lazily (it waits for ~32 MB of them), which measures 45-70 MiB on Node 20 on
 * loopback and then stays flat over any number of uploads. That figure is printed as
 * "first uploads" but is not what the claim is about. A client that buffered whole files would
 * still fail here: the measured file is four times the warm-up one, so it would need >= 150 MB
 * more than anything the warm-up left behind. The stored copy is checked by sha256.
 * Exit code 1 on any FAIL.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { writeOggOpusRecording } from '../src/audio/ogg-opus.ts';
import { createCrmSandbox, type ReceivedUpload } from '../src/sandbox/crm/index.ts';
import { createCrmClient } from '../src/services/crm.client.ts';
import { LocalRecordingStorage } from '../src/services/storage/index.ts';

/** ≈ 208 MB at the speech fixture's ~2.6 kB/s. */
const RECORDING_DURATION_SECONDS = 80_000;
/** ≈ 52 MB: a quarter of the measured file. */
const WARM_UP_DURATION_SECONDS = 20_000;
const WARM_UP_UPLOADS = 3;
const RSS_SAMPLE_INTERVAL_MS = 20;
const MIB = 1024 * 1024;
const MAX_RSS_GROWTH_BYTES = 50 * MIB;

type ChildMessage =
  | { kind: 'generated'; path: string; sizeBytes: number; sha256: string; durationSeconds: number }
  | { kind: 'listening'; url: string }
  | { kind: 'measuring' }
  | { kind: 'report'; baselineRssBytes: number; peakRssBytes: number; uploads: ReceivedUpload[] };

/** Peak RSS of this process between `start()` and `stop()`, sampled on an interval and at both ends. */
function rssSampler() {
  let peak = 0;
  let timer: NodeJS.Timeout | undefined;
  const sample = () => {
    peak = Math.max(peak, process.memoryUsage.rss());
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

/** Child role: run the sandbox; measure between "measure" and "report". */
async function serveSandbox(storageDir: string): Promise<void> {
  const sampler = rssSampler();
  const sandbox = createCrmSandbox({ storageDir, maxUploadBytes: 1024 * MIB });
  const { url } = await sandbox.start();
  let baselineRssBytes = 0;
  process.on('message', (message: { kind: string }) => {
    if (message.kind === 'measure') {
      baselineRssBytes = process.memoryUsage.rss();
      sampler.start();
      void send({ kind: 'measuring' });
    } else if (message.kind === 'report') {
      const peakRssBytes = sampler.stop();
      void send({ kind: 'report', baselineRssBytes, peakRssBytes, uploads: sandbox.received().uploads })
        .then(() => sandbox.close())
        .then(() => process.disconnect());
    }
  });
  await send({ kind: 'listening', url });
}

function startChild(args: string[]): ChildProcess {
  // fork() passes on our execArgv (`--import tsx`), so the child runs this same file.
  return fork(fileURLToPath(import.meta.url), args, { stdio: 'inherit' });
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
    const cleanup = () => {
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

const mib = (bytes: number) => `${(bytes / MIB).toFixed(1)} MiB`;
const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');

async function main(): Promise<number> {
  const freshRssBytes = process.memoryUsage.rss();
  const dir = await mkdtemp(join(tmpdir(), 'callsync-bench-'));
  let sandboxChild: ChildProcess | undefined;
  try {
    console.log(`upload-memory bench: writing Ogg Opus recordings (~200 MB and ~50 MB) in ${dir}`);
    const generator = startChild([
      'generate',
      `${join(dir, 'recordings', 'bench-call.ogg')}=${RECORDING_DURATION_SECONDS}`,
      `${join(dir, 'recordings', 'warm-up.ogg')}=${WARM_UP_DURATION_SECONDS}`,
    ]);
    const recording = await nextMessage(generator, 'generated');
    const warmUp = await nextMessage(generator, 'generated');

    sandboxChild = startChild(['sandbox', join(dir, 'crm')]);
    const { url } = await nextMessage(sandboxChild, 'listening');
    const client = createCrmClient({ baseUrl: url });
    // Read as the supervisor reads a shared-volume recording: checked, measured, streamed.
    const storage = new LocalRecordingStorage({ recordingsDir: join(dir, 'recordings') });
    const sampler = rssSampler();

    sampler.start();
    for (let i = 0; i < WARM_UP_UPLOADS; i += 1) {
      const warm = await storage.open({ filename: 'warm-up.ogg', location: '' });
      await client.uploadRecording({ callId: `bench-warm-up-${i}`, recording: warm });
    }
    const firstUploadsPeakRssBytes = sampler.stop();

    sandboxChild.send({ kind: 'measure' });
    await nextMessage(sandboxChild, 'measuring');
    const baselineRssBytes = process.memoryUsage.rss();
    sampler.start();
    const startedMs = performance.now();
    const opened = await storage.open({ filename: 'bench-call.ogg', location: '' });
    const result = await client.uploadRecording({ callId: 'bench-call', recording: opened });
    const durationSeconds = (performance.now() - startedMs) / 1000;
    const peakRssBytes = sampler.stop();
    await client.close();

    sandboxChild.send({ kind: 'report' });
    const sandbox = await nextMessage(sandboxChild, 'report');
    const stored = sandbox.uploads.find((upload) => upload.idempotencyKey === 'bench-call:recording');

    const clientGrowth = peakRssBytes - baselineRssBytes;
    const sandboxGrowth = sandbox.peakRssBytes - sandbox.baselineRssBytes;
    const intact = stored?.sha256 === recording.sha256 && stored.sizeBytes === recording.sizeBytes;
    const clientOk = clientGrowth < MAX_RSS_GROWTH_BYTES;
    const sandboxOk = sandboxGrowth < MAX_RSS_GROWTH_BYTES;
    const hours = (recording.durationSeconds / 3600).toFixed(1);
    const throughput = recording.sizeBytes / MIB / durationSeconds;

    const lines = [
      '',
      `file size         ${recording.sizeBytes} bytes (${mib(recording.sizeBytes)}, ${hours} h of Ogg Opus)`,
      `upload            HTTP ${result.status} in ${durationSeconds.toFixed(2)} s (${throughput.toFixed(1)} MiB/s)`,
      `client  RSS       baseline ${mib(baselineRssBytes)}, peak ${mib(peakRssBytes)}, ` +
        `peak growth ${mib(clientGrowth)}  ${verdict(clientOk)} (< ${mib(MAX_RSS_GROWTH_BYTES)})`,
      `sandbox RSS       baseline ${mib(sandbox.baselineRssBytes)}, peak ${mib(sandbox.peakRssBytes)}, ` +
        `peak growth ${mib(sandboxGrowth)}  ${verdict(sandboxOk)} (< ${mib(MAX_RSS_GROWTH_BYTES)})`,
      `stored copy       ${intact ? 'byte-identical (sha256)' : 'DIFFERENT from the source'}  ${verdict(intact)}`,
      `first uploads     fresh client process ${mib(freshRssBytes)}, peak during ${WARM_UP_UPLOADS} x ` +
        `${mib(warmUp.sizeBytes)} warm-up uploads ${mib(firstUploadsPeakRssBytes)} ` +
        `(+${mib(firstUploadsPeakRssBytes - freshRssBytes)}, one-time runtime sizing; see the header)`,
    ];
    const ok = clientOk && sandboxOk && intact;
    console.log(`${lines.join('\n')}\n\n${verdict(ok)}`);
    return ok ? 0 : 1;
  } finally {
    if (sandboxChild !== undefined && sandboxChild.exitCode === null) sandboxChild.kill();
    await rm(dir, { recursive: true, force: true });
  }
}

const [role, ...args] = process.argv.slice(2);
if (role === 'generate') {
  await generate(args);
} else if (role === 'sandbox') {
  await serveSandbox(args[0]!);
} else {
  process.exitCode = await main();
}
