/**
 * Store bench, before / after: `npm run bench` (last), or on its own
 * `node --import tsx bench/store-durability.ts [after-checkout]`.
 *
 * Two checkouts of callsync side by side, each run as its own supervisor process exactly as
 * `npm start` runs it (`node --import tsx src/main.ts`, configured only by the contract's
 * environment variables) and driven only through the public HTTP API:
 * - "before": commit `BENCH_BEFORE` (default d4638d3), checked out as a git worktree under
 *   /tmp (kept and reused by later runs). Its node_modules is a symlink to the "after"
 *   checkout's when the two package-lock.json files are identical, else `npm ci` runs there once.
 * - "after": the working tree at the path given as the first argument, or this repository.
 *
 * Each checkout runs once on SQLite (a fresh file in a temp dir) and once on PostgreSQL
 * (`BENCH_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/test, in a schema of its
 * own given by `?schema=` on CALLSYNC_STORE and dropped afterwards). The LiveKit emulator and
 * the CRM sandbox run in this process (egresses record 1 s files; every call is reported
 * as an agent would: the room and its SIP caller, `POST /v1/calls`, the egress recording,
 * transcript batches, `end`, then the caller hangs up). Three measurements per run, in order:
 *
 * 1. Store bytes per transcript item, for one call of 5,000 items posted one batch of 10
 *    after another: the first 500 items and the last 500, so a cost that grows with the call
 *    shows as a larger second figure. Each end of a window first waits until the supervisor's
 *    store writes have settled (its wchar still / none of its PostgreSQL connections, named by
 *    `application_name`, busy), so a store that answers before it writes is charged for the
 *    items it wrote. The items' text is ~90 characters of seeded random words, which
 *    compresses about as well as speech (PostgreSQL compresses large values).
 *    - PostgreSQL: WAL bytes, `pg_wal_lsn_diff(pg_current_wal_lsn(), <start>)` around the
 *      window. The WAL is the whole cluster's: other activity on the database (a test run,
 *      autovacuum, a checkpoint's full-page images) adds to it.
 *    - SQLite: the supervisor process's `wchar` from /proc/<pid>/io (bytes passed to write(2)
 *      and pwrite(2): every WAL frame and every checkpoint write into the db file, each time it
 *      is written), less the bytes of the HTTP answers it wrote to the bench in the window
 *      (status line, headers and body, counted here). `write_bytes` is not used: it counts a
 *      page once when it is dirtied, so rewriting a page still dirty in the page cache (the
 *      WAL is rewritten from its start after each checkpoint) is not counted again. Log lines
 *      would count too, so the supervisor runs at LOG_LEVEL=warn.
 * 2. Ingest latency: 100 calls at once, each posting 500 items in batches of 10 one after
 *    another; p50 and p99 of the POST /transcript round trips, seen from this process (which
 *    shares the machine's cores with the supervisor and PostgreSQL).
 * 3. CPU per delivered call: 200 calls (50 at a time), each with 20 items (two batches), a
 *    lead and `end`, until the CRM sandbox holds every call's data (with its recording
 *    uploaded); the supervisor's utime + stime from /proc/<pid>/stat over that span, divided
 *    by 200.
 *
 * Latency and CPU depend on what else the machine runs (two cores: a test run alongside
 * doubles the latencies); the SQLite byte counts are exact and repeat to the byte. About 3
 * minutes on an otherwise idle machine: the "before" checkout spends most of it rewriting
 * snapshots.
 *
 * Sanity (exit 1 otherwise): every POST is answered as the contract says, and every call's
 * data reaches the CRM with all of its items (and, in 3, its lead). Nothing else is asserted.
 * Every wait is bounded. Environment: BENCH_BEFORE, BENCH_POSTGRES_URL, BENCH_STORES
 * (`sqlite,postgres` by default).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, realpathSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, symlink } from 'node:fs/promises';
import { STATUS_CODES } from 'node:http';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { EgressStatus } from 'livekit-server-sdk';
import pg from 'pg';
import { Pool, type Dispatcher } from 'undici';
import { createCrmSandbox, type CrmSandbox, type ReceivedCallData } from '../src/sandbox/crm/index.ts';
import { createLiveKitEmulator, type LiveKitEmulator } from '../src/sandbox/livekit/index.ts';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const BEFORE_REF = process.env.BENCH_BEFORE ?? 'd4638d3';
const POSTGRES_URL = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const STORE_NAMES = (process.env.BENCH_STORES ?? 'sqlite,postgres').split(',').map((s) => s.trim());

const BATCH = 10;
const LONG_CALL_ITEMS = 5_000;
const WINDOW_ITEMS = 500;
const INGEST_CALLS = 100;
const INGEST_ITEMS = 500;
const CPU_CALLS = 200;
const CPU_ITEMS = 20;
const CPU_CONCURRENCY = 50;

const API_KEY = 'APIbenchstore';
const API_SECRET = 'bench-store-durability-secret-long-enough-for-hs256';
const CRM_API_KEY = 'bench-crm-key';
const INGEST_TOKEN = 'bench-ingest-token';
const CALLER_NUMBER = '+15550100200';
const PERSONA = {
  campaigns: [{ _id: 'camp_bench', client: 'client_bench', voiceAgents: [{ _id: 'va_bench' }] }],
};
/**
 * Words for the transcript text: each item gets ~90 characters drawn by a seeded generator
 * (the same text on every run and checkout), so the text compresses about as well as speech
 * does. Four repeated sentences would compress to almost nothing in PostgreSQL's TOAST and
 * hide what a stored snapshot really costs.
 */
const WORDS = (
  'yes no okay sure thanks hello please sorry right well so and but the a to of in on for with my your ' +
  'order account delivery payment refund number phone address email plan upgrade price offer week month ' +
  'today tomorrow morning evening Tuesday Friday name confirm check change cancel help call back agent ' +
  'service support problem issue bill invoice card bank transfer balance date time store product size ' +
  'colour model warranty repair return pickup courier tracking code message discount premium basic family ' +
  'business contract renewal loan insurance policy claim branch manager appointment visit interested ' +
  'maybe later send share details quote amount rupees dollars twenty fifty hundred thousand'
).split(' ');

/** Bounds on every wait, so a broken checkout fails the bench instead of hanging it. */
const READY_TIMEOUT_MS = 30_000;
const EGRESS_TIMEOUT_MS = 20_000;
const DELIVERY_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 15_000;
const POLL_MS = 100;

type StoreKind = 'sqlite' | 'postgres';
const STORES = STORE_NAMES.filter((name): name is StoreKind => name === 'sqlite' || name === 'postgres');
type Side = 'before' | 'after';

interface RunResult {
  bytesPerItemFirst: number;
  bytesPerItemLast: number;
  ingestP50Ms: number;
  ingestP99Ms: number;
  cpuMsPerCall: number;
  /** Wall time of each measurement (the 5,000-item call, the ingest, the CPU calls) and the whole run. */
  longCallSeconds: number;
  ingestSeconds: number;
  cpuSeconds: number;
  seconds: number;
}

class BenchError extends Error {}

/**
 * On Ctrl-C or SIGTERM: the supervisor processes are killed at once, then each run's temp dir
 * and PostgreSQL schema are removed (bounded), and the bench exits 130.
 */
const liveChildren = new Set<ChildProcess>();
const interruptCleanups = new Set<() => Promise<void>>();
function onInterrupt(signal: NodeJS.Signals): void {
  console.error(
    `store-durability bench: ${signal}: stopping the supervisors, removing temp dirs and schemas`,
  );
  for (const child of liveChildren) child.kill('SIGKILL');
  setTimeout(() => process.exit(130), 5_000).unref();
  void Promise.allSettled([...interruptCleanups].map((cleanup) => cleanup())).then(() => process.exit(130));
}
process.once('SIGINT', onInterrupt);
process.once('SIGTERM', onInterrupt);

// ---------------------------------------------------------------------------------------------
// Checkouts

function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

function describeCheckout(dir: string): string {
  try {
    const head = git(dir, 'rev-parse', '--short', 'HEAD');
    const dirty = git(dir, 'status', '--porcelain', '--untracked-files=no') !== '';
    return `${head}${dirty ? ' + uncommitted changes' : ''}`;
  } catch {
    return 'not a git checkout';
  }
}

/** The "before" worktree under /tmp, at `BEFORE_REF`, with node_modules it can run with. */
async function prepareBefore(afterDir: string): Promise<{ dir: string; commit: string; modules: string }> {
  const commit = git(REPO_ROOT, 'rev-parse', '--verify', `${BEFORE_REF}^{commit}`);
  const dir = join(tmpdir(), `callsync-bench-before-${commit.slice(0, 12)}`);
  let reuse = false;
  if (existsSync(dir)) {
    try {
      // A node_modules symlink is untracked (the `node_modules/` ignore rule matches directories only).
      reuse =
        git(dir, 'rev-parse', 'HEAD') === commit &&
        git(dir, 'status', '--porcelain', '--untracked-files=no') === '';
    } catch {
      reuse = false;
    }
    if (!reuse) {
      await rm(dir, { recursive: true, force: true });
      git(REPO_ROOT, 'worktree', 'prune');
    }
  }
  if (!reuse) git(REPO_ROOT, 'worktree', 'add', '--detach', '--force', dir, commit);

  const beforeLock = git(REPO_ROOT, 'show', `${commit}:package-lock.json`);
  const afterLockPath = join(afterDir, 'package-lock.json');
  const afterLock = existsSync(afterLockPath) ? readFileSync(afterLockPath, 'utf8').trim() : undefined;
  const afterModules = join(afterDir, 'node_modules');
  const modules = join(dir, 'node_modules');
  const isLink = existsSync(modules) && lstatSync(modules).isSymbolicLink();
  if (afterLock === beforeLock && existsSync(afterModules)) {
    if (!isLink) await rm(modules, { recursive: true, force: true });
    else if (realpathSync(modules) === realpathSync(afterModules)) return { dir, commit, modules: 'symlink' };
    else await rm(modules, { force: true });
    await symlink(realpathSync(afterModules), modules, 'dir');
    return { dir, commit, modules: 'symlink (identical package-lock.json)' };
  }
  if (isLink) await rm(modules, { force: true });
  if (!existsSync(join(modules, '.package-lock.json'))) {
    console.log(`store-durability bench: package-lock.json differs; npm ci in ${dir} (once)`);
    execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'inherit' });
  }
  return { dir, commit, modules: 'own npm ci (package-lock.json differs)' };
}

// ---------------------------------------------------------------------------------------------
// The supervisor process and what /proc says about it

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of the process (all its threads), in milliseconds. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which is in parentheses and may hold spaces): state is 3rd.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

/** Bytes the process passed to write-like system calls (`wchar` of /proc/<pid>/io). */
function wchar(pid: number): number {
  const match = /^wchar:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
  if (!match) throw new BenchError(`no wchar in /proc/${pid}/io`);
  return Number(match[1]);
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  await new Promise<void>((done) => server.close(() => done()));
  return port;
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
  ms: number;
  /** Bytes of the whole HTTP answer as the supervisor wrote it (status line, headers, body). */
  wireBytes: number;
}

interface Supervisor {
  pid: number;
  post(path: string, body: unknown): Promise<Answer>;
  stop(): Promise<void>;
  output(): string;
}

function wireBytesOf(status: number, headers: Dispatcher.ResponseData['headers'], body: string): number {
  let bytes = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n\r\n`.length + Buffer.byteLength(body);
  for (const [name, value] of Object.entries(headers)) {
    for (const one of Array.isArray(value) ? value : [value]) bytes += `${name}: ${one ?? ''}\r\n`.length;
  }
  return bytes;
}

async function startSupervisor(checkout: string, env: Record<string, string>): Promise<Supervisor> {
  const inherited: Record<string, string> = {};
  for (const name of ['PATH', 'HOME', 'TMPDIR'] as const) {
    const value = process.env[name];
    if (value !== undefined) inherited[name] = value;
  }
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: checkout,
    env: { ...inherited, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  liveChildren.add(child);
  let output = '';
  const keep = (chunk: string) => (output = (output + chunk).slice(-8_000));
  child.stdout.setEncoding('utf8').on('data', keep);
  child.stderr.setEncoding('utf8').on('data', keep);
  let exited = false;
  const exit = new Promise<void>((done) =>
    child.once('close', () => {
      exited = true;
      liveChildren.delete(child);
      done();
    }),
  );
  const url = `http://127.0.0.1:${env.CALLSYNC_PORT}`;
  const http = new Pool(url, { connections: 128 });
  const headers = { authorization: `Bearer ${INGEST_TOKEN}`, 'content-type': 'application/json' };

  const stop = async () => {
    await http.close();
    if (exited) return;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await exit;
    clearTimeout(killer);
  };

  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (exited) throw new BenchError(`the supervisor in ${checkout} exited before it was ready:\n${output}`);
    if (Date.now() > deadline) {
      await stop();
      throw new BenchError(
        `the supervisor in ${checkout} was not ready in ${READY_TIMEOUT_MS} ms:\n${output}`,
      );
    }
    try {
      const answer = await http.request({ method: 'GET', path: '/readyz', headersTimeout: 2_000 });
      await answer.body.dump();
      if (answer.statusCode === 200) break;
    } catch {
      // not listening yet
    }
    await delay(POLL_MS);
  }

  return {
    pid: child.pid!,
    async post(path, body) {
      const started = performance.now();
      const answer = await http.request({ method: 'POST', path, headers, body: JSON.stringify(body) });
      const text = await answer.body.text();
      const ms = performance.now() - started;
      return {
        status: answer.statusCode,
        body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
        ms,
        wireBytes: wireBytesOf(answer.statusCode, answer.headers, text),
      };
    },
    stop,
    output: () => output,
  };
}

// ---------------------------------------------------------------------------------------------
// Calls, as an agent and a SIP caller make them

interface Rig {
  supervisor: Supervisor;
  emulator: LiveKitEmulator;
  crm: CrmSandbox;
  /** The sandbox's `<storageDir>/call-data`, and how many files it held after the last check. */
  callDataDir: string;
  callDataFiles: number;
}

function expectStatus(answer: Answer, status: number, what: string): Answer {
  if (answer.status !== status)
    throw new BenchError(`${what}: ${answer.status} (expected ${status}) ${JSON.stringify(answer.body)}`);
  return answer;
}

/** ~90 characters of words for item `n` (mulberry32 seeded by `n`: deterministic). */
function utterance(n: number): string {
  let seed = (n + 1) * 0x9e3779b9;
  const random = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
  const words: string[] = [];
  let length = 0;
  while (length < 90) {
    const word = WORDS[Math.floor(random() * WORDS.length)]!;
    words.push(word);
    length += word.length + 1;
  }
  return `${words.join(' ')}.`;
}

function items(prefix: string, from: number, count: number) {
  const timestamp = new Date().toISOString();
  return Array.from({ length: count }, (_, k) => {
    const n = from + k;
    return {
      id: `${prefix}-${n}`,
      role: n % 2 === 0 ? 'assistant' : 'user',
      content: utterance(n),
      timestamp,
      transcriptConfidence: 0.92,
    };
  });
}

async function openCall(rig: Rig, room: string): Promise<string> {
  rig.emulator.setRoomBehaviour(room, { recordingSeconds: 1 });
  rig.emulator.createRoom({ name: room });
  rig.emulator.startSipCall({ room, callerNumber: CALLER_NUMBER, attributes: { 'sip.ruleID': 'SDR_bench' } });
  const created = expectStatus(
    await rig.supervisor.post('/v1/calls', {
      roomName: room,
      callerNumber: CALLER_NUMBER,
      config: PERSONA,
      direction: 'inbound',
    }),
    201,
    `POST /v1/calls ${room}`,
  );
  return created.body.callId as string;
}

/** Resolves once the room's egress is recording (checked and awaited in one tick). */
async function recording(emulator: LiveKitEmulator, room: string): Promise<void> {
  let [egress] = emulator.listEgress({ roomName: room });
  egress ??= (
    await emulator.waitForEvent('egress:updated', (event) => event.info.roomName === room, {
      timeoutMs: EGRESS_TIMEOUT_MS,
    })
  ).info;
  await emulator.waitForEgress(egress.egressId, (info) => info.status === EgressStatus.EGRESS_ACTIVE, {
    timeoutMs: EGRESS_TIMEOUT_MS,
  });
}

async function postBatch(rig: Rig, callId: string, batch: ReturnType<typeof items>): Promise<Answer> {
  return expectStatus(
    await rig.supervisor.post(`/v1/calls/${callId}/transcript`, { items: batch }),
    202,
    `POST transcript ${callId}`,
  );
}

async function endCall(rig: Rig, callId: string, room: string): Promise<void> {
  expectStatus(
    await rig.supervisor.post(`/v1/calls/${callId}/end`, { status: 'completed' }),
    202,
    `POST end ${callId}`,
  );
  rig.emulator.hangUp({ room });
}

/**
 * Waits until the CRM holds call data for every one of `callIds`, and checks each document.
 * Polled on the sandbox's call-data directory (a file per document), so the wait costs next to
 * nothing: the sandbox's read-out and its waiters deep-copy everything it received each time.
 */
async function delivered(
  rig: Rig,
  callIds: string[],
  check: (document: ReceivedCallData['document'], callId: string) => string | undefined,
): Promise<void> {
  const wanted = new Set(callIds);
  const deadline = Date.now() + DELIVERY_TIMEOUT_MS;
  const stored = async () => (await readdir(rig.callDataDir).catch(() => [])).length;
  for (;;) {
    if ((await stored()) - rig.callDataFiles >= wanted.size) {
      const received = rig.crm.received().callData.filter((data) => wanted.has(data.callId));
      if (new Set(received.map((data) => data.callId)).size === wanted.size) {
        for (const data of received) {
          const problem = check(data.document, data.callId);
          if (problem) throw new BenchError(`call ${data.callId} reached the CRM ${problem}`);
        }
        rig.crm.reset();
        rig.callDataFiles = await stored();
        return;
      }
    }
    if (Date.now() > deadline) {
      const received = rig.crm.received().callData.filter((data) => wanted.has(data.callId));
      throw new BenchError(
        `only ${received.length} of ${wanted.size} calls reached the CRM within ${DELIVERY_TIMEOUT_MS} ms; ` +
          `supervisor output: ${rig.supervisor.output()}`,
      );
    }
    await delay(POLL_MS);
  }
}

const withItems = (count: number) => (document: ReceivedCallData['document']) =>
  document.transcription.total_items === count
    ? undefined
    : `with ${document.transcription.total_items} items, not ${count}`;

/** Lets webhooks and hang-ups of the previous step land, so they are not counted in the next. */
async function settle(rig: Rig): Promise<void> {
  await delay(400);
  await rig.emulator.webhooksIdle();
  await delay(100);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

// ---------------------------------------------------------------------------------------------
// The three measurements

/**
 * Opens a measuring window and returns what closes it (given the bytes of the HTTP answers sent
 * in it): the store's bytes written in between. Both ends first wait for the supervisor's store
 * writes to settle, so writes still in flight when an answer came back (a store that answers
 * before it writes) land in the window of the items they belong to.
 */
type Window = () => Promise<(answerBytes: number) => Promise<number>>;

const QUIESCE_POLL_MS = 25;
const QUIESCE_TIMEOUT_MS = 20_000;

/** Until the process's wchar has not moved for two polls in a row (bounded). */
async function quiesceWrites(pid: number): Promise<void> {
  const deadline = Date.now() + QUIESCE_TIMEOUT_MS;
  let last = wchar(pid);
  let still = 0;
  while (still < 2 && Date.now() < deadline) {
    await delay(QUIESCE_POLL_MS);
    const now = wchar(pid);
    still = now === last ? still + 1 : 0;
    last = now;
  }
}

/**
 * Until no query of the supervisor's runs (its connections carry the schema as
 * application_name; its statements name the schema too) for two polls in a row (bounded).
 */
async function quiescePostgres(db: pg.Client, schema: string): Promise<void> {
  const deadline = Date.now() + QUIESCE_TIMEOUT_MS;
  let still = 0;
  while (still < 2 && Date.now() < deadline) {
    const { rows } = await db.query<{ busy: string }>(
      `SELECT count(*)::text AS busy FROM pg_stat_activity
        WHERE pid <> pg_backend_pid() AND state <> 'idle'
          AND (application_name = $1 OR strpos(query, $1) > 0)`,
      [schema],
    );
    still = rows[0]!.busy === '0' ? still + 1 : 0;
    await delay(QUIESCE_POLL_MS);
  }
}

async function measureLongCall(rig: Rig, window: Window): Promise<[number, number]> {
  const room = 'bench-long-call';
  const callId = await openCall(rig, room);
  await recording(rig.emulator, room);
  await settle(rig);
  const batches = LONG_CALL_ITEMS / BATCH;
  const windowBatches = WINDOW_ITEMS / BATCH;
  const perItem: number[] = [];
  let close: ((answerBytes: number) => Promise<number>) | undefined;
  let answerBytes = 0;
  for (let b = 0; b < batches; b++) {
    if (b === 0 || b === batches - windowBatches) {
      close = await window();
      answerBytes = 0;
    }
    answerBytes += (await postBatch(rig, callId, items(callId, b * BATCH, BATCH))).wireBytes;
    if (b === windowBatches - 1 || b === batches - 1)
      perItem.push((await close!(answerBytes)) / WINDOW_ITEMS);
  }
  await endCall(rig, callId, room);
  await delivered(rig, [callId], withItems(LONG_CALL_ITEMS));
  return [perItem[0]!, perItem[1]!];
}

async function measureIngest(rig: Rig): Promise<[number, number]> {
  const rooms = Array.from({ length: INGEST_CALLS }, (_, i) => `bench-ingest-${i}`);
  const callIds = await Promise.all(rooms.map((room) => openCall(rig, room)));
  await Promise.all(rooms.map((room) => recording(rig.emulator, room)));
  await settle(rig);
  const latencies: number[] = [];
  await Promise.all(
    callIds.map(async (callId) => {
      for (let n = 0; n < INGEST_ITEMS; n += BATCH)
        latencies.push((await postBatch(rig, callId, items(callId, n, BATCH))).ms);
    }),
  );
  await Promise.all(callIds.map((callId, i) => endCall(rig, callId, rooms[i]!)));
  await delivered(rig, callIds, withItems(INGEST_ITEMS));
  latencies.sort((a, b) => a - b);
  return [percentile(latencies, 50), percentile(latencies, 99)];
}

async function measureCpu(rig: Rig): Promise<number> {
  await settle(rig);
  const callIds: string[] = [];
  const cpuBefore = cpuMs(rig.supervisor.pid);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < CPU_CALLS; i = next++) {
      const room = `bench-cpu-${i}`;
      const callId = await openCall(rig, room);
      callIds.push(callId);
      for (let n = 0; n < CPU_ITEMS; n += BATCH) await postBatch(rig, callId, items(callId, n, BATCH));
      expectStatus(
        await rig.supervisor.post(`/v1/calls/${callId}/leads`, { leadId: `lead-${i}`, data: { room } }),
        202,
        `POST leads ${callId}`,
      );
      await recording(rig.emulator, room);
      await endCall(rig, callId, room);
    }
  };
  await Promise.all(Array.from({ length: CPU_CONCURRENCY }, worker));
  await delivered(rig, callIds, (document, callId) => {
    const problem = withItems(CPU_ITEMS)(document);
    if (problem) return problem;
    const leadId = document.lead.leadId;
    return typeof leadId === 'string' && leadId.startsWith('lead-')
      ? undefined
      : `without its lead (${callId})`;
  });
  const cpu = cpuMs(rig.supervisor.pid) - cpuBefore;
  return cpu / CPU_CALLS;
}

// ---------------------------------------------------------------------------------------------
// One checkout on one store

async function runOne(side: Side, checkout: string, store: StoreKind, db: pg.Client): Promise<RunResult> {
  const started = performance.now();
  const dir = await mkdtemp(join(tmpdir(), `callsync-store-bench-${side}-`));
  const recordingsDir = join(dir, 'recordings');
  await mkdir(recordingsDir, { recursive: true });
  const schema = `bench_store_${side}_${process.pid}_${Date.now().toString(36)}`;
  let storeUrl = `sqlite:${join(dir, 'callsync.db')}`;
  if (store === 'postgres') {
    const url = new URL(POSTGRES_URL);
    url.searchParams.set('schema', schema);
    // Names the supervisor's connections, so the bench can see when their writes have settled.
    url.searchParams.set('application_name', schema);
    storeUrl = url.toString();
  }
  const emulator = createLiveKitEmulator({
    keys: { [API_KEY]: API_SECRET },
    recordingsDir,
    activateAfterMs: 10,
    finalizeAfterMs: 50,
    departureTimeoutMs: 200,
    webhookRetry: { maxAttempts: 3, baseDelayMs: 20 },
  });
  const crm = createCrmSandbox({ storageDir: join(dir, 'crm'), apiKey: CRM_API_KEY });
  let supervisor: Supervisor | undefined;
  const dropSchema = () =>
    store === 'postgres'
      ? db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).then(() => undefined)
      : undefined;
  const interrupted = async () => {
    await dropSchema();
    await rm(dir, { recursive: true, force: true });
  };
  interruptCleanups.add(interrupted);
  try {
    const [{ url: liveKitUrl }, { url: crmUrl }] = await Promise.all([emulator.start(), crm.start()]);
    const port = await freePort();
    emulator.addWebhookUrl(`http://127.0.0.1:${port}/livekit/webhook`);
    supervisor = await startSupervisor(checkout, {
      LIVEKIT_URL: liveKitUrl,
      LIVEKIT_API_KEY: API_KEY,
      LIVEKIT_API_SECRET: API_SECRET,
      CRM_BASE_URL: crmUrl,
      CRM_API_KEY,
      CALLSYNC_HOST: '127.0.0.1',
      CALLSYNC_PORT: String(port),
      CALLSYNC_STORE: storeUrl,
      CALLSYNC_RECORDINGS_DIR: recordingsDir,
      CALLSYNC_INGEST_TOKEN: INGEST_TOKEN,
      CALLSYNC_INSTANCE_ID: `bench-${side}`,
      LOG_LEVEL: 'warn',
    });
    const rig: Rig = {
      supervisor,
      emulator,
      crm,
      callDataDir: join(dir, 'crm', 'call-data'),
      callDataFiles: 0,
    };
    const pid = supervisor.pid;
    const window: Window =
      store === 'postgres'
        ? async () => {
            await quiescePostgres(db, schema);
            const { rows } = await db.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
            const start = rows[0]!.lsn;
            return async () => {
              await quiescePostgres(db, schema);
              const diff = await db.query<{ bytes: string }>(
                'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::text AS bytes',
                [start],
              );
              return Number(diff.rows[0]!.bytes);
            };
          }
        : async () => {
            await quiesceWrites(pid);
            const start = wchar(pid);
            return async (answerBytes: number) => {
              await quiesceWrites(pid);
              return wchar(pid) - start - answerBytes;
            };
          };

    const lap = (() => {
      let last = performance.now();
      return () => {
        const now = performance.now();
        const seconds = (now - last) / 1000;
        last = now;
        return seconds;
      };
    })();
    const [bytesPerItemFirst, bytesPerItemLast] = await measureLongCall(rig, window);
    const longCallSeconds = lap();
    const [ingestP50Ms, ingestP99Ms] = await measureIngest(rig);
    const ingestSeconds = lap();
    const cpuMsPerCall = await measureCpu(rig);
    const cpuSeconds = lap();
    return {
      bytesPerItemFirst,
      bytesPerItemLast,
      ingestP50Ms,
      ingestP99Ms,
      cpuMsPerCall,
      longCallSeconds,
      ingestSeconds,
      cpuSeconds,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    await supervisor?.stop();
    await emulator.close();
    await crm.close();
    await dropSchema();
    await rm(dir, { recursive: true, force: true });
    interruptCleanups.delete(interrupted);
  }
}

// ---------------------------------------------------------------------------------------------
// The table

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => (n < 10 ? n.toFixed(2) : n.toFixed(1));
const secs = (n: number) => n.toFixed(1);
const ratio = (before: number, after: number) =>
  before > 0 && Number.isFinite(after) ? `${(after / before).toFixed(2)}×` : '—';

function printTable(store: StoreKind, before: RunResult, after: RunResult): void {
  const bytes =
    store === 'postgres'
      ? 'WAL bytes, pg_wal_lsn_diff around the window'
      : 'supervisor wchar (/proc/<pid>/io) less its HTTP answers';
  const rows: [string, (r: RunResult) => number, (n: number) => string][] = [
    [
      `bytes/item, items 1-${WINDOW_ITEMS} of one ${int(LONG_CALL_ITEMS)}-item call`,
      (r) => r.bytesPerItemFirst,
      int,
    ],
    [
      `bytes/item, items ${int(LONG_CALL_ITEMS - WINDOW_ITEMS + 1)}-${int(LONG_CALL_ITEMS)}`,
      (r) => r.bytesPerItemLast,
      int,
    ],
    [
      '  growth (last / first window)',
      (r) => r.bytesPerItemLast / r.bytesPerItemFirst,
      (n) => `${n.toFixed(2)}×`,
    ],
    [`ingest p50 ms (${INGEST_CALLS} calls × ${INGEST_ITEMS} items)`, (r) => r.ingestP50Ms, ms],
    [`ingest p99 ms (${INGEST_CALLS} calls × ${INGEST_ITEMS} items)`, (r) => r.ingestP99Ms, ms],
    [`CPU ms per delivered call (${CPU_CALLS} × ${CPU_ITEMS} items, lead, end)`, (r) => r.cpuMsPerCall, ms],
    ['wall s: the long call (with its delivery)', (r) => r.longCallSeconds, secs],
    ['wall s: the ingest (with its deliveries)', (r) => r.ingestSeconds, secs],
    ['wall s: the CPU calls', (r) => r.cpuSeconds, secs],
    ['wall s: the whole run (start-up and stop included)', (r) => r.seconds, secs],
  ];
  const label = 58;
  const col = 12;
  console.log(`\n${store === 'postgres' ? 'PostgreSQL' : 'SQLite'} (bytes: ${bytes})`);
  console.log(`${''.padEnd(label)}${'before'.padStart(col)}${'after'.padStart(col)}${'ratio'.padStart(col)}`);
  for (const [name, value, format] of rows) {
    const b = value(before);
    const a = value(after);
    console.log(
      `${name.padEnd(label)}${format(b).padStart(col)}${format(a).padStart(col)}${ratio(b, a).padStart(col)}`,
    );
  }
}

async function main(): Promise<number> {
  const afterDir = resolve(process.argv[2] ?? REPO_ROOT);
  if (STORES.length === 0 || STORES.length !== STORE_NAMES.length)
    throw new BenchError(
      `BENCH_STORES: a comma-separated list of sqlite, postgres (got ${STORE_NAMES.join(',')})`,
    );
  if (!existsSync(join(afterDir, 'src', 'main.ts')))
    throw new BenchError(`${afterDir} is not a callsync checkout (no src/main.ts)`);
  if (!existsSync(join(afterDir, 'node_modules')))
    throw new BenchError(`${afterDir} has no node_modules: run npm ci there first`);
  const before = await prepareBefore(afterDir);
  console.log(
    `store-durability bench: before = ${before.commit.slice(0, 7)} (${before.dir}, node_modules: ${before.modules}); ` +
      `after = ${afterDir} (${describeCheckout(afterDir)})`,
  );
  const checkouts: Record<Side, string> = { before: before.dir, after: afterDir };

  const db = new pg.Client({ connectionString: POSTGRES_URL });
  if (STORES.includes('postgres')) await db.connect();
  try {
    const results: Partial<Record<StoreKind, Record<Side, RunResult>>> = {};
    for (const store of STORES) {
      const bySide: Partial<Record<Side, RunResult>> = {};
      for (const side of ['before', 'after'] as const) {
        console.log(`store-durability bench: ${side} on ${store}…`);
        bySide[side] = await runOne(side, checkouts[side], store, db);
      }
      results[store] = bySide as Record<Side, RunResult>;
    }
    console.log(
      `\nstore-durability: ${LONG_CALL_ITEMS}-item call and ingest in batches of ${BATCH} items; ` +
        `every call reached the CRM with all its items; ratio = after / before`,
    );
    for (const store of STORES) printTable(store, results[store]!.before, results[store]!.after);
    return 0;
  } finally {
    if (STORES.includes('postgres')) await db.end();
  }
}

try {
  process.exitCode = await main();
} catch (error) {
  console.error(
    `store-durability bench FAILED: ${error instanceof BenchError ? error.message : (error as Error).stack}`,
  );
  process.exitCode = 1;
}
