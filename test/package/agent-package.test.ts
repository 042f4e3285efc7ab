/**
 * `callsync/agent` as a separate agent project gets it. `npm pack` of the
 * built `dist/` makes the tarball; a scratch project outside the repository
 * installs it next to @livekit/agents, @livekit/rtc-node and zod (the versions in our lockfile,
 * from npm's cache where it has them); the workspace's `tsc` typechecks and compiles the small
 * agent in `agent-project/` (only the package's public API, its types checked to be real); and
 * the compiled agent runs in its own process, a text-mode voice.AgentSession with
 * `voice.testing.FakeLLM` attached with `attachCallsync`, reporting to the real supervisor (the
 * in-process harness: SQLite, the LiveKit emulator recording the room, the CRM sandbox). The CRM
 * must receive what the contract says: the recording, and the call data with every turn in
 * order, the lead, the caller, the persona and the room's session id.
 */
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  INGEST_TOKEN,
  PERSONA_CONFIG,
  PERSONA_DOCUMENT,
  startCallsyncHarness,
  type CallsyncHarness,
} from '../helpers/callsync-harness.ts';

const run = promisify(execFile);

const REPO_DIR = fileURLToPath(new URL('../../', import.meta.url));
const AGENT_PROJECT_DIR = fileURLToPath(new URL('./agent-project/', import.meta.url));
const TSC = join(REPO_DIR, 'node_modules', 'typescript', 'bin', 'tsc');
/** Installing writes ~350 packages; two busy cores take their time. */
const SETUP_TIMEOUT_MS = 240_000;
const TEST_TIMEOUT_MS = 120_000;
const OUTPUT_BYTES_MAX = 64 * 1024 * 1024;

const CALLER_NUMBER = '+15550002222';
const LEAD_ID = 'lead_package_1';
const EXPECTED_TURNS = [
  ['user', 'Hi'],
  ['assistant', 'Hello! How can I help?'],
  ['user', 'I am Ann, 555-0100'],
  ['assistant', "Thanks Ann, we'll call you back."],
];

/** The environment without the `npm_*` variables of an enclosing `npm test`, which would steer a nested npm. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('npm_')));
}

async function npm(args: string[], cwd: string): Promise<string> {
  try {
    const { stdout } = await run('npm', args, { cwd, env: cleanEnv(), maxBuffer: OUTPUT_BYTES_MAX });
    return stdout;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`npm ${args.join(' ')} failed:\n${stdout ?? ''}\n${stderr ?? ''}`, { cause: error });
  }
}

async function lockedVersion(name: string): Promise<string> {
  const lock = JSON.parse(await readFile(join(REPO_DIR, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { version?: string }>;
  };
  const version = lock.packages[`node_modules/${name}`]?.version;
  if (version === undefined) throw new Error(`${name} is not in package-lock.json`);
  return version;
}

interface AgentMessage {
  event: string;
  [field: string]: unknown;
}

/** The agent process and its stdout as one JSON message a line. */
function agentProcess(child: ChildProcessWithoutNullStreams) {
  const stderr: string[] = [];
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return {
    stderr: () => stderr.join(''),
    exited,
    async next(): Promise<AgentMessage> {
      const line = await lines.next();
      if (line.done) throw new Error(`the agent's output ended; its stderr:\n${stderr.join('')}`);
      return JSON.parse(line.value) as AgentMessage;
    },
  };
}

let workDir: string;
let tarball: string;
let packedFiles: string[];
let projectDir: string;
let h: CallsyncHarness | undefined;
let agent: ChildProcessWithoutNullStreams | undefined;

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'callsync-agent-package-'));
  // Packed from the `dist/` already built (`npm run build`; `.ci/run` builds before the tests),
  // with --ignore-scripts: `prepare` would rebuild `dist/` in place, deleting it first, under the
  // test files running the built binary meanwhile (the CLI's tests failed on a missing
  // dist/cli/main.js that way). `npm ci` runs `prepare` itself.
  if (!existsSync(join(REPO_DIR, 'dist', 'agent', 'index.js'))) {
    throw new Error('dist/ is missing: run `npm run build` before this test');
  }
  const [packed] = JSON.parse(
    await npm(['pack', '--json', '--ignore-scripts', '--pack-destination', workDir], REPO_DIR),
  ) as {
    filename: string;
    files: { path: string }[];
  }[];
  tarball = join(workDir, packed!.filename);
  packedFiles = packed!.files.map((file) => file.path);

  projectDir = join(workDir, 'agent-project');
  await cp(AGENT_PROJECT_DIR, projectDir, { recursive: true });
  await writeFile(
    join(projectDir, 'package.json'),
    JSON.stringify({ name: 'callsync-package-test-agent', private: true, type: 'module' }),
  );
  const peers = await Promise.all(
    ['@livekit/agents', '@livekit/rtc-node', 'zod', '@types/node'].map(
      async (name) => `${name}@${await lockedVersion(name)}`,
    ),
  );
  // --ignore-scripts: the tarball's runtime dependencies are the supervisor's, with
  // better-sqlite3's native build, which an agent never loads; the agents' own scripts do nothing.
  await npm(
    ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', tarball, ...peers],
    projectDir,
  );
}, SETUP_TIMEOUT_MS);

afterEach(async () => {
  agent?.kill('SIGKILL');
  agent = undefined;
  await h?.close();
  h = undefined;
});

afterAll(async () => {
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe('the callsync/agent package', () => {
  it('packs the compiled package (agent entry point and its types) with README and LICENSE, without sources, tests, maps or the dev-only demo and sandboxes', () => {
    expect(packedFiles).toEqual(
      expect.arrayContaining([
        'package.json',
        'README.md',
        'LICENSE',
        'dist/agent/index.js',
        'dist/agent/index.d.ts',
        'dist/main.js',
        // The operator's command line (`npx callsync` after install): its shim and what it runs.
        'bin/callsync.js',
        'dist/cli/main.js',
      ]),
    );
    const outside = packedFiles.filter(
      (path) =>
        !['package.json', 'README.md', 'LICENSE', 'bin/callsync.js'].includes(path) &&
        !path.startsWith('dist/'),
    );
    expect(outside).toEqual([]);
    expect(
      packedFiles.filter(
        (path) =>
          path.endsWith('.map') ||
          path.startsWith('dist/demo/') ||
          path.startsWith('dist/sandbox/') ||
          path.startsWith('dist/audio/fixtures/'),
      ),
    ).toEqual([]);
  });

  it(
    'installed in an agent project, typechecks against its types and reports a FakeLLM call to the real supervisor, which delivers it to the CRM',
    async () => {
      await run(process.execPath, [TSC, '-p', join(projectDir, 'tsconfig.json')], {
        cwd: projectDir,
      }).catch((error: { stdout?: string }) => {
        throw new Error(`tsc on the agent project failed:\n${error.stdout ?? ''}`, { cause: error });
      });

      h = await startCallsyncHarness();
      const room = `package-${randomUUID()}`;
      h.emulator.createRoom({ name: room });
      const sip = h.emulator.startSipCall({
        room,
        callerNumber: CALLER_NUMBER,
        attributes: { 'sip.ruleID': 'SDR_package' },
      });
      agent = spawn(process.execPath, ['out/agent.js'], {
        cwd: projectDir,
        env: {
          PATH: process.env.PATH ?? '',
          HOME: process.env.HOME ?? '',
          CALLSYNC_URL: h.url,
          CALLSYNC_INGEST_TOKEN: INGEST_TOKEN,
          LOG_LEVEL: 'error',
          AGENT_ROOM_NAME: room,
          AGENT_ROOM_SID: sip.room.sid,
          AGENT_JOB_METADATA: JSON.stringify(PERSONA_CONFIG),
          AGENT_CALLER_IDENTITY: sip.caller.identity,
          AGENT_CALLER_ATTRIBUTES: JSON.stringify(sip.caller.attributes),
        },
      });
      const output = agentProcess(agent);

      const talked = await output.next();
      expect(talked.event).toBe('talked');
      await h.recordingStarted(room);
      h.emulator.hangUp({ room });
      agent.stdin.write('hang-up\n');
      const done = (await output.next()) as AgentMessage & {
        report: { callId: string; undelivered: unknown[] };
        shutdowns: string[];
      };
      expect(await output.exited, output.stderr()).toBe(0);

      expect(done.event).toBe('done');
      expect(done.report.undelivered).toEqual([]);
      const callId = done.report.callId;
      expect(callId).toBe(talked.proposedCallId);
      expect(done.shutdowns).toHaveLength(1);

      const { document } = await h.crm.waitForCallData(callId);
      const upload = h.crm.received().uploads.find((item) => item.idempotencyKey === `${callId}:recording`);
      expect(upload, 'the recording was uploaded').toBeDefined();
      expect(document.transcription.conversation_items.map((item) => [item.role, item.content])).toEqual(
        EXPECTED_TURNS,
      );
      expect(document).toMatchObject({
        ...PERSONA_DOCUMENT,
        callDetails: {
          callId,
          direction: 'inbound',
          status: 'completed',
          callerNumber: CALLER_NUMBER,
          recordingUrl: upload!.url,
          recordingSize: upload!.sizeBytes,
        },
        caller: { phoneNumber: CALLER_NUMBER },
        transcription: {
          session_id: sip.room.sid,
          total_items: EXPECTED_TURNS.length,
          lead_generated: true,
          metadata: { room_name: room },
        },
      });
      expect(document.lead).toEqual({ leadId: LEAD_ID, name: 'Ann', phone: '555-0100' });
      expect(h.crm.received().callData.filter((item) => item.callId === callId)).toHaveLength(1);
      expect((await h.api('GET', `/v1/calls/${callId}`)).body).toMatchObject({
        state: 'done',
        outcome: 'delivered',
        leads: [LEAD_ID],
      });
    },
    TEST_TIMEOUT_MS,
  );
});
