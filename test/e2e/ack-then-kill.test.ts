/**
 * "A 2xx means stored" (README, "What a 2xx promises"), end to end on both stores: the real supervisor runs as a
 * child process and is SIGKILLed the instant the last of its 2xx answers is in, then started
 * again on the same store. Everything it acknowledged must reach the CRM.
 *
 * Each of `CALLS` calls is driven as an agent drives one: `POST /v1/calls`, then at the same time
 * one transcript batch of `ITEMS_PER_CALL` items and a lead, and, once both are answered `202`,
 * `POST /end`. All calls run concurrently; the kill comes as soon as every one of those answers
 * is in (no delay), so the last writes are as fresh as they can be. After the restart every call
 * must be in the CRM sandbox with exactly the items it was sent (content carries the item id,
 * in the order sent, with the time and confidence sent) and its lead, and callsync must report it
 * finished (`done`), not stuck in conversation. The recording may be delivered or missing
 * (`partial`): the kill may land anywhere in the egress, and this test is about the events.
 *
 * Expected values are what the test sent and what the contract promises, never what the code
 * stored. A call that cannot ever be delivered (its stored state says it is still in the
 * conversation: its `end` was lost) ends the wait early, so a losing store fails fast with a
 * count of what it lost instead of waiting out the deadline.
 *
 * Synchronisation: real HTTP answers, the child's `recovery done` log line, and the CRM
 * sandbox's read-out with `GET /v1/calls` polled in a bounded loop. No sleeps, no timing asserts.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { CallData } from '../../src/payload/call-data.ts';
import type { ApiAnswer } from '../helpers/callsync-api.ts';
import type { ChildCallsync } from '../helpers/child-callsync.ts';
import {
  CALLER_NUMBER,
  PERSONA_CONFIG,
  startChildPipeline,
  type ChildPipeline,
} from '../helpers/child-pipeline.ts';
import { postgresSchemas } from '../helpers/postgres-schemas.ts';

const CALLS = 40;
const ITEMS_PER_CALL = 5;
/**
 * How long the restarted supervisor may take to deliver every call (start-up, egress polling,
 * uploads) on two busy cores. Only a failing run waits this long, and only if no call is stuck.
 */
const DELIVERY_DEADLINE_MS = 30_000;

/** The machines' PostgreSQL, a schema of its own per run. */
const schemas = postgresSchemas('callsync_ack_kill');
afterAll(() => schemas.dropAll());

/** The child's environment for each store: SQLite is the pipeline's own file in its temp dir. */
const STORES: [string, () => Record<string, string>][] = [
  ['sqlite', () => ({})],
  ['postgres', () => ({ CALLSYNC_STORE: schemas.storeUrl() })],
];

/** States a call leaves only on a new event: after a restart, such a call was never ended. */
const IN_CONVERSATION = new Set(['recording', 'inConversation']);

interface SentItem {
  id: string;
  role: 'user' | 'assistant';
  content: string;
  timestamp: string;
  transcriptConfidence: number;
}

/** What the supervisor acknowledged for one call: all of it must reach the CRM. */
interface AcknowledgedCall {
  room: string;
  callId: string;
  items: SentItem[];
  leadId: string;
  leadData: Record<string, unknown>;
}

let p: ChildPipeline | undefined;
afterEach(async () => {
  await p?.close();
  p = undefined;
});

function expectStatus(answer: ApiAnswer, status: number, what: string): void {
  if (answer.status !== status)
    throw new Error(`${what}: answered ${answer.status}, not ${status}: ${JSON.stringify(answer.body)}`);
}

/** One call as an agent reports it; resolves once every answer (the end's last) is a 2xx. */
async function driveCall(
  pipeline: ChildPipeline,
  child: ChildCallsync,
  index: number,
): Promise<AcknowledgedCall> {
  const room = `ack-kill-${index}`;
  pipeline.emulator.createRoom({ name: room });
  pipeline.emulator.startSipCall({
    room,
    callerNumber: CALLER_NUMBER,
    attributes: { 'sip.ruleID': 'SDR_child' },
  });
  const startedAtMs = Date.now() - 60_000;
  const created = await child.api('POST', '/v1/calls', {
    roomName: room,
    callerNumber: CALLER_NUMBER,
    config: PERSONA_CONFIG,
    direction: 'inbound',
    startedAt: new Date(startedAtMs).toISOString(),
  });
  expectStatus(created, 201, `POST /v1/calls ${room}`);
  const callId = created.body.callId as string;

  const items: SentItem[] = Array.from({ length: ITEMS_PER_CALL }, (_, turn) => {
    const id = `${room}-item-${turn}`;
    return {
      id,
      role: turn % 2 === 0 ? 'assistant' : 'user',
      // The CRM document has no item id, so the content carries it.
      content: `[${id}] turn ${turn} of call ${index}`,
      timestamp: new Date(startedAtMs + (turn + 1) * 2_000).toISOString(),
      transcriptConfidence: (turn + 1) / 10,
    };
  });
  const leadId = `lead-${room}`;
  const leadData = { room, index, interest: index % 3 === 0 ? 'high' : 'low' };
  const [transcript, lead] = await Promise.all([
    child.api('POST', `/v1/calls/${callId}/transcript`, { items }),
    child.api('POST', `/v1/calls/${callId}/leads`, { leadId, data: leadData }),
  ]);
  expectStatus(transcript, 202, `POST /transcript ${room}`);
  expectStatus(lead, 202, `POST /leads ${room}`);
  const ended = await child.api('POST', `/v1/calls/${callId}/end`, { status: 'completed' });
  expectStatus(ended, 202, `POST /end ${room}`);
  return { room, callId, items, leadId, leadData };
}

interface CallView {
  callId: string;
  state: string;
  status: string;
  outcome: string | null;
  endedAt: string | null;
  transcriptItems: number;
  leads: string[];
}

/** What went missing for one call (empty when everything acknowledged arrived). */
function lossesOf(call: AcknowledgedCall, document: CallData | undefined, view: CallView): string[] {
  const losses: string[] = [];
  if (IN_CONVERSATION.has(view.state) || view.endedAt === null) losses.push(`end lost (state ${view.state})`);
  if (!document) {
    losses.push(`no call data in the CRM (state ${view.state})`);
    // What the store kept, to count what the kill lost.
    if (view.transcriptItems < call.items.length)
      losses.push(`${call.items.length - view.transcriptItems} of ${call.items.length} items lost`);
    if (!view.leads.includes(call.leadId)) losses.push('lead lost');
    return losses;
  }
  const received = document.transcription.conversation_items;
  const missing = call.items.filter((item) => !received.some((got) => got.content === item.content));
  if (missing.length > 0) losses.push(`${missing.length} of ${call.items.length} items lost`);
  if (document.lead.leadId !== call.leadId) losses.push('lead lost');
  if (view.state !== 'done') losses.push(`not done: ${view.state}`);
  return losses;
}

describe.each(STORES)('a 2xx means stored (%s): SIGKILL right after the last answer', (store, storeEnv) => {
  it(`delivers every acknowledged item, lead and end of ${CALLS} calls after the restart`, async () => {
    // The egress deadline outlasts the kill and the restart, so a recording is not given up early.
    p = await startChildPipeline({ env: { ...storeEnv(), CALLSYNC_EGRESS_DEADLINE_SECONDS: '60' } });
    const pipeline = p;
    const { crm } = pipeline;
    const first = await pipeline.start();

    const acknowledged = await Promise.all(
      Array.from({ length: CALLS }, (_, index) => driveCall(pipeline, first, index)),
    );
    // The instant every answer is in: nothing runs between the last 2xx and the kill.
    expect((await first.kill()).signal).toBe('SIGKILL');

    const second = await pipeline.start();
    await second.waitForLog((line) => line.msg === 'recovery done');
    if (store === 'postgres') {
      // A fleet member restarts under a new instance id, so it takes the dead one's calls over
      // once that lease lapses, after `recovery done`. Until then a row shows the state it was
      // stored in, which is still `inConversation` when the kill came before any snapshot
      // after the end: judged then, an end waiting in the log would count as lost. (A call the
      // dead instance delivered before the kill is not active, and nobody takes it over.)
      const listed = await second.api('GET', '/v1/calls');
      expectStatus(listed, 200, 'GET /v1/calls');
      const ours = new Set(acknowledged.map((call) => call.callId));
      const active = (listed.body.calls as CallView[]).filter(
        (view) => ours.has(view.callId) && view.status === 'active',
      );
      for (const { callId } of active) {
        await second.waitForLog((line) => line.msg === 'call taken over' && line.callId === callId);
      }
    }

    // Until every call is either in the CRM and done, or can never be (still in conversation).
    const callIds = new Set(acknowledged.map((call) => call.callId));
    const settled = (answer: ApiAnswer) => {
      const { callData } = crm.received();
      const views = (answer.body.calls as CallView[]).filter((view) => callIds.has(view.callId));
      return (
        views.length === CALLS &&
        views.every(
          (view) =>
            IN_CONVERSATION.has(view.state) ||
            (view.state === 'done' && callData.some((item) => item.callId === view.callId)),
        )
      );
    };
    let secondExited = false;
    void second.exited.then(() => (secondExited = true));
    await second
      .poll('/v1/calls', (answer) => answer.status === 200 && settled(answer), DELIVERY_DEADLINE_MS)
      .catch((error: unknown) => {
        // A deadline is judged call by call below, with what each one lost; a dead process is not.
        if (secondExited) throw error;
      });

    const { callData } = crm.received();
    const checked: { call: AcknowledgedCall; view: CallView; document: CallData | undefined }[] = [];
    const report: { room: string; losses: string[] }[] = [];
    for (const call of acknowledged) {
      const answer = await second.api('GET', `/v1/calls/${call.callId}`);
      expectStatus(answer, 200, `GET /v1/calls/${call.callId}`);
      const view = answer.body as unknown as CallView;
      const document = callData.find((item) => item.callId === call.callId)?.document;
      checked.push({ call, view, document });
      const losses = lossesOf(call, document, view);
      if (losses.length > 0) report.push({ room: call.room, losses });
    }
    const count = (pattern: RegExp) =>
      report.reduce((total, { losses }) => total + losses.filter((loss) => pattern.test(loss)).length, 0);
    const itemsLost = report.reduce(
      (total, { losses }) =>
        total +
        losses.reduce((sum, loss) => sum + Number(/^(\d+) of \d+ items lost$/.exec(loss)?.[1] ?? 0), 0),
      0,
    );
    const summary =
      `${store}: of ${CALLS} calls (${CALLS * ITEMS_PER_CALL} items, ${CALLS} leads, ${CALLS} ends acknowledged), ` +
      `${count(/^no call data/)} not in the CRM, ${count(/^end lost/)} ends lost, ` +
      `${itemsLost} items lost, ${count(/^lead lost$/)} leads lost; first calls: ` +
      JSON.stringify(report.slice(0, 10));
    expect(report, summary).toEqual([]);

    for (const { call, view, document } of checked) {
      // Every acknowledged item, by id (in its content) and content, in the order sent.
      expect(document!.transcription.total_items).toBe(ITEMS_PER_CALL);
      const received = document!.transcription.conversation_items.map((item) => ({
        role: item.role,
        content: item.content,
        timestamp: item.timestamp,
        transcript_confidence: item.transcript_confidence,
      }));
      expect(received).toEqual(
        call.items.map((item) => ({
          role: item.role,
          content: item.content,
          timestamp: item.timestamp,
          transcript_confidence: item.transcriptConfidence,
        })),
      );
      expect(document!.transcription.lead_generated).toBe(true);
      expect(document!.lead).toEqual({ ...call.leadData, leadId: call.leadId });
      expect(document!.callDetails).toMatchObject({ callId: call.callId, status: 'completed' });
      expect(view.state).toBe('done');
      expect(['delivered', 'partial']).toContain(view.outcome);
    }

    second.signal('SIGTERM');
    expect(await second.exited).toEqual({ code: 0, signal: null });
  }, 90_000);
});
