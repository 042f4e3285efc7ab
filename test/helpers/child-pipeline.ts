/**
 * The whole pipeline with callsync out of process: the LiveKit emulator and the CRM sandbox run
 * in the test process, callsync runs as a child (`child-callsync.ts`) on a fixed port and a
 * fixed SQLite store, so it can be killed and started again as often as a test likes and every
 * incarnation is the same deployment: the emulator's webhook URL stays valid (webhooks sent while
 * no process listens fail, as they would in production) and each start recovers the same store.
 *
 * Calls are driven as an agent and a SIP caller would drive them: the room and the caller on the
 * emulator, then `POST /v1/calls`, transcript and lead through callsync's HTTP API, and `end`.
 * Every wait is on an event (the emulator's egress updates, the CRM sandbox's read-out) or on a
 * real HTTP answer, never on time alone.
 */
import { EgressStatus } from 'livekit-server-sdk';
import type { CrmSandbox } from '../../src/sandbox/crm/index.ts';
import type { LiveKitEmulator, RoomBehaviour } from '../../src/sandbox/livekit/index.ts';
import { CHILD_WAIT_MS, spawnCallsync, type ChildCallsync } from './child-callsync.ts';
import { CALLER_NUMBER, PERSONA_CONFIG, callTimes } from './callsync-api.ts';
import { freePort } from './free-port.ts';
import { egressIdOf, startSandboxes } from './sandboxes.ts';

// Distinctive values, so a test can grep the child's output for them.
export const CHILD_API_KEY = 'APIchildkey';
export const CHILD_API_SECRET = 'child-livekit-secret-4f1c9a7e2b6d8035-long-enough-for-hs256';
export const CHILD_CRM_API_KEY = 'child-crm-key-9d27e4b1c6a85f30';
export const CHILD_INGEST_TOKEN = 'child-ingest-token-3b8e51f0a7c2d694';

export { CALLER_NUMBER, PERSONA_CONFIG } from './callsync-api.ts';
export { egressIdOf } from './sandboxes.ts';

/** Transcript items a call gets from `openCall` (the CRM document must carry all of them). */
export const TRANSCRIPT_ITEMS_PER_CALL = 3;

export interface OpenCall {
  room: string;
  callId: string;
  egressId: string;
  leadId: string;
}

export interface ChildPipeline {
  dir: string;
  recordingsDir: string;
  /** `sqlite:<dir>/callsync.db`, shared by every incarnation. */
  storeUrl: string;
  port: number;
  emulator: LiveKitEmulator;
  crm: CrmSandbox;
  /** The environment a child gets (the pipeline's own, then `overrides`). */
  env(overrides?: Record<string, string>): Record<string, string>;
  /** The incarnation started last. */
  readonly child: ChildCallsync;
  /** Starts a new incarnation on the same port and store, and waits for `/readyz`. */
  start(overrides?: Record<string, string>): Promise<ChildCallsync>;
  /** A SIP call in a new room, reported to callsync (created, transcript, lead), its egress ACTIVE. */
  openCall(room: string, behaviour?: RoomBehaviour): Promise<OpenCall>;
  endCall(call: OpenCall): Promise<void>;
  /** SIGKILLs a child still running, closes the sandboxes, removes the temp dir. */
  close(): Promise<void>;
}

export interface ChildPipelineOptions {
  /** Environment every incarnation gets, over the pipeline's defaults. */
  env?: Record<string, string>;
  /** Every incarnation starts with this open-files limit (`spawnCallsync`'s `openFilesLimit`). */
  openFilesLimit?: number | undefined;
  /** Every incarnation starts with these node options (`spawnCallsync`'s `nodeArgs`). */
  nodeArgs?: readonly string[] | undefined;
}

export async function startChildPipeline(options: ChildPipelineOptions = {}): Promise<ChildPipeline> {
  const sandboxes = await startSandboxes({
    prefix: 'callsync-child-',
    liveKit: { apiKey: CHILD_API_KEY, apiSecret: CHILD_API_SECRET },
    crmApiKey: CHILD_CRM_API_KEY,
    ingestToken: CHILD_INGEST_TOKEN,
    // A webhook to a dead process fails fast and is not redelivered: callsync's polling must cover.
    emulator: { webhookRetry: { maxAttempts: 2, baseDelayMs: 20 } },
  });
  const { dir, recordingsDir, emulator, crm } = sandboxes;
  const storeUrl = sandboxes.env.CALLSYNC_STORE!;
  const port = await freePort();
  emulator.addWebhookUrl(`http://127.0.0.1:${port}/livekit/webhook`);

  const env = (overrides: Record<string, string> = {}) => ({
    ...sandboxes.env,
    CALLSYNC_HOST: '127.0.0.1',
    CALLSYNC_PORT: String(port),
    LOG_LEVEL: 'info',
    ...options.env,
    ...overrides,
  });

  let current: ChildCallsync | undefined;
  const started: ChildCallsync[] = [];
  const child = () => {
    if (!current) throw new Error('no callsync child started yet');
    return current;
  };

  return {
    dir,
    recordingsDir,
    storeUrl,
    port,
    emulator,
    crm,
    env,
    get child() {
      return child();
    },
    async start(overrides) {
      current = spawnCallsync({
        env: env(overrides),
        ingestToken: CHILD_INGEST_TOKEN,
        openFilesLimit: options.openFilesLimit,
        nodeArgs: options.nodeArgs,
      });
      started.push(current);
      await current.waitReady();
      return current;
    },
    async openCall(room, behaviour) {
      emulator.createRoom({ name: room });
      if (behaviour) emulator.setRoomBehaviour(room, behaviour);
      emulator.startSipCall({ room, callerNumber: CALLER_NUMBER, attributes: { 'sip.ruleID': 'SDR_child' } });
      const created = await child().api('POST', '/v1/calls', {
        roomName: room,
        callerNumber: CALLER_NUMBER,
        config: PERSONA_CONFIG,
        direction: 'inbound',
      });
      if (created.status !== 201) throw new Error(`POST /v1/calls ${room}: ${created.status}`);
      const callId = created.body.callId as string;
      const { at } = callTimes();
      const transcript = await child().api('POST', `/v1/calls/${callId}/transcript`, {
        items: [
          { id: `${room}-1`, role: 'assistant', content: 'Hello, how can I help?', timestamp: at(1) },
          { id: `${room}-2`, role: 'user', content: `I am calling about ${room}.`, timestamp: at(3) },
          { id: `${room}-3`, role: 'assistant', content: 'Noted, thank you.', timestamp: at(5) },
        ],
      });
      const leadId = `lead-${room}`;
      const lead = await child().api('POST', `/v1/calls/${callId}/leads`, { leadId, data: { room } });
      if (transcript.status !== 202 || lead.status !== 202)
        throw new Error(`reporting ${room}: transcript ${transcript.status}, lead ${lead.status}`);
      const egressId = await egressIdOf(emulator, room, CHILD_WAIT_MS);
      await emulator.waitForEgress(egressId, (info) => info.status === EgressStatus.EGRESS_ACTIVE, {
        timeoutMs: CHILD_WAIT_MS,
      });
      return { room, callId, egressId, leadId };
    },
    async endCall(call) {
      const ended = await child().api('POST', `/v1/calls/${call.callId}/end`, { status: 'completed' });
      if (ended.status !== 202) throw new Error(`POST /end ${call.callId}: ${ended.status}`);
    },
    async close() {
      await Promise.all(started.map((incarnation) => incarnation.kill()));
      await sandboxes.close();
    },
  };
}
