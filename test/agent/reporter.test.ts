import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UNDELIVERED_REASONS } from '../../src/agent/errors.ts';
import {
  MAX_UNDELIVERED_DETAILS,
  TRANSCRIPT_BATCH_MAX_ITEMS,
  type ReporterEvent,
} from '../../src/agent/reporter.ts';
import {
  startAgentSupervisorStub,
  type AgentSupervisorStub,
  type StubEvent,
} from '../helpers/agent-supervisor-stub.ts';
import { createBody, testReporter, turn, uniqueRoom } from '../helpers/agent-fixtures.ts';

const TOKEN = 'ingest-secret-7c1f';

/** What the supervisor received, flattened: `create`, each item id, `lead:<id>`, `end`. */
function sequence(events: readonly StubEvent[]): string[] {
  return events.flatMap((event) => {
    switch (event.kind) {
      case 'create':
        return ['create'];
      case 'transcript':
        return event.body.items.map((item) => item.id);
      case 'lead':
        return [`lead:${event.body.leadId}`];
      case 'end':
        return ['end'];
    }
  });
}

function retries(events: readonly ReporterEvent[]) {
  return events.filter(
    (event): event is Extract<ReporterEvent, { type: 'retrying' }> => event.type === 'retrying',
  );
}

describe('reporter against a live supervisor', () => {
  let stub: AgentSupervisorStub;

  beforeEach(async () => {
    stub = await startAgentSupervisorStub({ ingestToken: TOKEN });
  });

  afterEach(async () => {
    await stub.close();
  });

  it('delivers the create, every turn and the lead in the order they happened, then the end, with the bearer token', async () => {
    const room = uniqueRoom();
    const { reporter, logs } = testReporter({ baseUrl: stub.url, token: TOKEN });

    reporter.startCall(createBody(room));
    for (const index of [1, 2, 3]) reporter.addTranscriptItem(turn(index));
    reporter.addLead({ leadId: 'lead_1', data: { name: 'Bob' } });
    for (const index of [4, 5]) reporter.addTranscriptItem(turn(index));
    reporter.endCall({
      endedAt: new Date().toISOString(),
      status: 'completed',
      reason: 'participant_disconnected',
    });
    const report = await reporter.close();

    expect(report).toEqual({ callId: `lk_${room}`, delivered: 8, undelivered: [], undeliveredCount: 0 });
    expect(sequence(stub.events)).toEqual([
      'create',
      'item_1',
      'item_2',
      'item_3',
      'lead:lead_1',
      'item_4',
      'item_5',
      'end',
    ]);
    const call = stub.callByRoom(room)!;
    expect(call.create).toMatchObject({ roomName: room, callerNumber: '+15550001111', direction: 'inbound' });
    expect(call.transcript.map((item) => item.content)).toEqual([
      'turn 1',
      'turn 2',
      'turn 3',
      'turn 4',
      'turn 5',
    ]);
    expect(call.leads).toEqual([{ leadId: 'lead_1', data: { name: 'Bob' } }]);
    expect(call.end).toMatchObject({ status: 'completed', reason: 'participant_disconnected' });
    expect(stub.requests.length).toBeGreaterThan(0);
    expect(stub.requests.every((request) => request.authorization === `Bearer ${TOKEN}`)).toBe(true);
    expect(logs.text()).not.toContain(TOKEN);
  });

  it('holds events queued before the caller is known until the create has been answered', async () => {
    const room = uniqueRoom();
    const { reporter } = testReporter({ baseUrl: stub.url, token: TOKEN });

    reporter.addTranscriptItem(turn(1));
    reporter.addTranscriptItem(turn(2));
    expect(stub.requests).toHaveLength(0);
    reporter.startCall(createBody(room));
    reporter.endCall();
    await reporter.close();

    expect(sequence(stub.events)).toEqual(['create', 'item_1', 'item_2', 'end']);
  });

  it('uses the callId the supervisor answers when the room was already known to it', async () => {
    const room = uniqueRoom();
    const first = testReporter({ baseUrl: stub.url, token: TOKEN });
    first.reporter.startCall(createBody(room, { callId: 'call_first' }));
    await first.reporter.idle();
    const second = testReporter({ baseUrl: stub.url, token: TOKEN });

    second.reporter.startCall(createBody(room, { callId: 'call_second' }));
    second.reporter.addTranscriptItem(turn(7));
    second.reporter.endCall();
    const report = await second.reporter.close();

    expect(report.callId).toBe('call_first');
    expect(stub.call('call_second')).toBeUndefined();
    expect(stub.call('call_first')?.transcript.map((item) => item.id)).toEqual(['item_7']);
    await first.reporter.close();
  });

  it('retries while the supervisor is down and loses nothing once it is back', async () => {
    const room = uniqueRoom();
    const { reporter, events, logs } = testReporter({ baseUrl: stub.url, token: TOKEN });
    reporter.startCall(createBody(room));
    reporter.addTranscriptItem(turn(1));
    await reporter.idle();
    const requestsBeforeOutage = stub.requests.length;

    await stub.down();
    reporter.addTranscriptItem(turn(2));
    reporter.addLead({ leadId: 'lead_9' });
    reporter.addTranscriptItem(turn(3));
    await events.waitFor((seen) => retries(seen).length >= 3);
    expect(stub.requests).toHaveLength(requestsBeforeOutage);
    expect(reporter.stats().queued).toBe(3);

    await stub.up();
    reporter.addTranscriptItem(turn(4));
    reporter.endCall();
    const report = await reporter.close();

    expect(report.undelivered).toEqual([]);
    expect(report.delivered).toBe(7);
    expect(sequence(stub.events)).toEqual([
      'create',
      'item_1',
      'item_2',
      'lead:lead_9',
      'item_3',
      'item_4',
      'end',
    ]);
    expect(retries(events.events).every((event) => event.code === 'NETWORK_ERROR')).toBe(true);
    expect(logs.lines.filter((line) => line.msg.includes('supervisor unavailable'))).toHaveLength(1);
    expect(logs.lines.some((line) => line.msg.includes('reachable again'))).toBe(true);
  });

  it('retries 5xx, 429 (honouring Retry-After), a reset connection, a timeout and 503 while draining', async () => {
    const room = uniqueRoom();
    const { reporter, events } = testReporter({ baseUrl: stub.url, token: TOKEN, requestTimeoutMs: 200 });
    stub.failNext({ status: 500 });
    stub.failNext({ status: 429, code: 'RATE_LIMITED', retryAfterSeconds: 0 });
    stub.failNext({ reset: true });
    stub.failNext({ hang: true });
    stub.setAccepting(false);

    reporter.startCall(createBody(room));
    await events.waitFor((seen) => retries(seen).some((event) => event.code === 'DRAINING'));
    stub.setAccepting(true);
    reporter.endCall();
    const report = await reporter.close();

    expect(report.undelivered).toEqual([]);
    expect(retries(events.events).map((event) => [event.code, event.status])).toEqual(
      expect.arrayContaining([
        ['STUB_FAULT', 500],
        ['RATE_LIMITED', 429],
        ['NETWORK_ERROR', undefined],
        ['TIMEOUT', undefined],
        ['DRAINING', 503],
      ]),
    );
    expect(stub.callByRoom(room)?.end).toBeDefined();
  });

  it('does not repeat a request the supervisor refuses with a 4xx: it is reported undeliverable and the next one goes on', async () => {
    const room = uniqueRoom();
    const { reporter, logs } = testReporter({ baseUrl: stub.url, token: TOKEN });
    reporter.startCall(createBody(room));
    await reporter.idle();

    stub.failNext({ status: 400, code: 'INVALID_BODY' });
    reporter.addTranscriptItem(turn(1));
    await reporter.idle();
    reporter.addTranscriptItem(turn(2));
    reporter.endCall();
    const report = await reporter.close();

    expect(report.undelivered).toEqual([
      expect.objectContaining({
        kind: 'transcript',
        ref: 'item_1',
        reason: UNDELIVERED_REASONS.REJECTED,
        code: 'INVALID_BODY',
        status: 400,
        attempts: 1,
      }),
    ]);
    expect(stub.requests.filter((request) => request.path.endsWith('/transcript'))).toHaveLength(2);
    expect(sequence(stub.events)).toEqual(['create', 'item_2', 'end']);
    expect(logs.lines.some((line) => line.level === 'error' && line.msg.includes('refused'))).toBe(true);
  });

  it('treats a 409 CALL_ALREADY_ENDED to its own end as delivered (the call is ended)', async () => {
    const room = uniqueRoom();
    const { reporter } = testReporter({ baseUrl: stub.url, token: TOKEN });
    reporter.startCall(createBody(room));
    await reporter.idle();

    stub.failNext({ status: 409, code: 'CALL_ALREADY_ENDED' });
    reporter.endCall();
    const report = await reporter.close();

    expect(report).toMatchObject({ delivered: 2, undelivered: [] });
  });

  it('when the create is refused, reports everything of the call as undeliverable without sending it', async () => {
    const room = uniqueRoom();
    const { reporter } = testReporter({ baseUrl: stub.url, token: TOKEN });
    stub.failNext({ status: 400, code: 'INVALID_BODY' });

    reporter.startCall(createBody(room));
    reporter.addTranscriptItem(turn(1));
    await reporter.idle();
    reporter.addLead({ leadId: 'lead_2' });
    reporter.endCall();
    const report = await reporter.close();

    expect(report.callId).toBeUndefined();
    expect(report.undelivered.map((entry) => [entry.kind, entry.reason, entry.code])).toEqual([
      ['create', UNDELIVERED_REASONS.REJECTED, 'INVALID_BODY'],
      ['transcript', UNDELIVERED_REASONS.CALL_NOT_CREATED, 'INVALID_BODY'],
      ['lead', UNDELIVERED_REASONS.CALL_NOT_CREATED, 'INVALID_BODY'],
      ['end', UNDELIVERED_REASONS.CALL_NOT_CREATED, 'INVALID_BODY'],
    ]);
    expect(stub.requests).toHaveLength(1);
  });

  it('sends a backlog of turns in batches once the supervisor is back', async () => {
    const room = uniqueRoom();
    const { reporter, events } = testReporter({ baseUrl: stub.url, token: TOKEN });
    await stub.down();
    reporter.startCall(createBody(room));
    const total = TRANSCRIPT_BATCH_MAX_ITEMS * 2 + 20;
    for (let index = 1; index <= total; index += 1) reporter.addTranscriptItem(turn(index));
    await events.waitFor((seen) => retries(seen).length >= 1);

    await stub.up();
    reporter.endCall();
    const report = await reporter.close();

    expect(report).toMatchObject({ delivered: total + 2, undelivered: [] });
    const batches = stub.events.filter((event) => event.kind === 'transcript');
    expect(batches.map((event) => event.body.items.length)).toEqual([
      TRANSCRIPT_BATCH_MAX_ITEMS,
      TRANSCRIPT_BATCH_MAX_ITEMS,
      20,
    ]);
    expect(stub.callByRoom(room)?.transcript.map((item) => item.id)).toEqual(
      Array.from({ length: total }, (_, index) => `item_${index + 1}`),
    );
  });

  it('with a wrong token: refused once with 401, not repeated, and the token appears in no log line', async () => {
    const room = uniqueRoom();
    const wrong = 'wrong-token-4d2a';
    const { reporter, logs } = testReporter({ baseUrl: stub.url, token: wrong });

    reporter.startCall(createBody(room));
    reporter.endCall();
    const report = await reporter.close();

    expect(report.undelivered[0]).toMatchObject({
      kind: 'create',
      code: 'UNAUTHORIZED',
      status: 401,
      attempts: 1,
    });
    expect(stub.requests).toHaveLength(1);
    expect(stub.requests[0]?.authorization).toBe(`Bearer ${wrong}`);
    expect(logs.text()).not.toContain(wrong);
  });
});

describe('reporter bounds and deadlines', () => {
  let stub: AgentSupervisorStub;

  beforeEach(async () => {
    stub = await startAgentSupervisorStub();
  });

  afterEach(async () => {
    await stub.close();
  });

  it('refuses new turns and leads once the queue bound is hit, counts them, and still takes the end', async () => {
    const room = uniqueRoom();
    const { reporter, events, logs } = testReporter({ baseUrl: stub.url, maxQueuedRequests: 3 });
    await stub.down();

    reporter.startCall(createBody(room));
    for (const index of [1, 2, 3, 4, 5]) reporter.addTranscriptItem(turn(index));
    reporter.addLead({ leadId: 'lead_x' });
    reporter.endCall();

    expect(reporter.stats()).toMatchObject({ queued: 5, undelivered: 3 });
    expect(events.events.filter((event) => event.type === 'undelivered')).toHaveLength(3);
    await stub.up();
    const report = await reporter.close();

    expect(report.undelivered.map((entry) => [entry.ref, entry.reason])).toEqual([
      ['item_4', UNDELIVERED_REASONS.QUEUE_FULL],
      ['item_5', UNDELIVERED_REASONS.QUEUE_FULL],
      ['lead_x', UNDELIVERED_REASONS.QUEUE_FULL],
    ]);
    expect(sequence(stub.events)).toEqual(['create', 'item_1', 'item_2', 'item_3', 'end']);
    expect(
      logs.lines.filter((line) => line.msg.includes('queue full') && line.level === 'warn'),
    ).toHaveLength(1);
  });

  it('keeps its own record of what it could not deliver bounded too: past the cap it only counts', async () => {
    const { reporter, logs } = testReporter({ baseUrl: stub.url, maxQueuedRequests: 0 });
    reporter.startCall(createBody(uniqueRoom()));
    const total = MAX_UNDELIVERED_DETAILS + 5;
    for (let index = 1; index <= total; index += 1) reporter.addTranscriptItem(turn(index));
    reporter.endCall();
    const report = await reporter.close();

    expect(report.undeliveredCount).toBe(total);
    expect(report.undelivered).toHaveLength(MAX_UNDELIVERED_DETAILS);
    expect(report.delivered).toBe(2);
    const summary = logs.lines.find((line) => line.msg.includes('could not be delivered'));
    expect(summary?.fields).toMatchObject({
      undelivered: total,
      byReason: { [UNDELIVERED_REASONS.QUEUE_FULL]: total },
    });
  });

  it('bounds the queued bytes too', async () => {
    const room = uniqueRoom();
    const size = Buffer.byteLength(JSON.stringify(turn(1)));
    const { reporter } = testReporter({ baseUrl: stub.url, maxQueuedBytes: size * 2 + 1 });
    await stub.down();

    reporter.startCall(createBody(room));
    for (const index of [1, 2, 3]) reporter.addTranscriptItem(turn(index));
    const report = await reporter.close({ deadlineMs: 50 });

    expect(report.undelivered.find((entry) => entry.ref === 'item_3')?.reason).toBe(
      UNDELIVERED_REASONS.QUEUE_FULL,
    );
  });

  it('with the supervisor down for good, close returns at its deadline and lists what it could not deliver', async () => {
    const room = uniqueRoom();
    const { reporter, events, logs } = testReporter({ baseUrl: stub.url });
    await stub.down();

    reporter.startCall(createBody(room));
    reporter.addTranscriptItem(turn(1));
    reporter.addTranscriptItem(turn(2));
    reporter.addLead({ leadId: 'lead_3' });
    reporter.endCall();
    await events.waitFor((seen) => retries(seen).length >= 1);
    const report = await reporter.close({ deadlineMs: 100 });

    expect(report.callId).toBeUndefined();
    expect(report.delivered).toBe(0);
    expect(report.undelivered.map((entry) => [entry.kind, entry.ref, entry.reason])).toEqual([
      ['create', undefined, UNDELIVERED_REASONS.DEADLINE],
      ['transcript', 'item_1', UNDELIVERED_REASONS.DEADLINE],
      ['transcript', 'item_2', UNDELIVERED_REASONS.DEADLINE],
      ['lead', 'lead_3', UNDELIVERED_REASONS.DEADLINE],
      ['end', undefined, UNDELIVERED_REASONS.DEADLINE],
    ]);
    expect(report.undelivered[0]).toMatchObject({ code: 'NETWORK_ERROR' });
    expect(report.undelivered[0]!.attempts).toBeGreaterThanOrEqual(1);
    const summary = logs.lines.find((line) => line.msg.includes('could not be delivered'));
    expect(summary?.level).toBe('warn');
    expect(summary?.fields).toMatchObject({
      undelivered: 5,
      byReason: { [UNDELIVERED_REASONS.DEADLINE]: 5 },
    });
  });

  it('abandons a request the supervisor never answers when the deadline comes', async () => {
    const room = uniqueRoom();
    const { reporter } = testReporter({ baseUrl: stub.url, requestTimeoutMs: 60_000 });
    stub.failNext({ hang: true });

    reporter.startCall(createBody(room));
    await stub.waitFor((current) => current.requests.length === 1);
    const report = await reporter.close({ deadlineMs: 100 });

    expect(report.undelivered).toEqual([
      expect.objectContaining({ kind: 'create', reason: UNDELIVERED_REASONS.DEADLINE, attempts: 1 }),
    ]);
  });

  it('refuses events after the end or the close, and says when the call was never started', async () => {
    const started = testReporter({ baseUrl: stub.url });
    started.reporter.startCall(createBody(uniqueRoom()));
    started.reporter.endCall();
    started.reporter.addTranscriptItem(turn(1));
    const afterEnd = await started.reporter.close();
    started.reporter.addLead({ leadId: 'late' });

    expect(afterEnd.undelivered).toEqual([
      expect.objectContaining({ ref: 'item_1', reason: UNDELIVERED_REASONS.AFTER_CLOSE }),
    ]);
    expect(started.reporter.stats().undelivered).toBe(2);

    const never = testReporter({ baseUrl: stub.url });
    never.reporter.addTranscriptItem(turn(1));
    const report = await never.reporter.close();
    expect(report.undelivered).toEqual([
      expect.objectContaining({ ref: 'item_1', reason: UNDELIVERED_REASONS.NOT_STARTED, attempts: 0 }),
    ]);
  });

  it('close is idempotent and never rejects', async () => {
    const { reporter } = testReporter({ baseUrl: stub.url });
    reporter.startCall(createBody(uniqueRoom()));
    const first = reporter.close();
    expect(reporter.close()).toBe(first);
    await expect(first).resolves.toMatchObject({ undelivered: [] });
  });
});
