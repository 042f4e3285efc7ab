/**
 * Fixtures for agent-side tests: a valid persona config, create bodies and transcript items
 * with their own ids per test, and a reporter tuned for tests (short backoff, captured logs).
 */
import { randomUUID } from 'node:crypto';
import type { CreateCallBody } from '../../src/supervisor/call-api.ts';
import type { PersonaConfig } from '../../src/payload/persona-config.ts';
import {
  createCallReporter,
  type CallReporter,
  type ReporterOptions,
  type TranscriptItemReport,
} from '../../src/agent/reporter.ts';
import {
  captureLogs,
  recordReporterEvents,
  type CapturingLogger,
  type EventRecorder,
} from './agent-observers.ts';

/** 2025-10-29T10:00:00Z */
export const REFERENCE_MS = Date.UTC(2025, 9, 29, 10, 0, 0);

export const PERSONA_CONFIG: PersonaConfig = {
  campaigns: [
    { _id: 'camp_solar', client: 'client_acme', voiceAgents: [{ _id: 'va_reception' }], name: 'Solar' },
  ],
  persona: { voice: 'warm' },
};

export function uniqueRoom(prefix = 'room'): string {
  return `${prefix}-${randomUUID()}`;
}

export function createBody(roomName: string, overrides: Partial<CreateCallBody> = {}): CreateCallBody {
  return {
    roomName,
    callerNumber: '+15550001111',
    config: PERSONA_CONFIG,
    direction: 'inbound',
    startedAt: new Date(REFERENCE_MS).toISOString(),
    callId: `lk_${roomName}`,
    ...overrides,
  };
}

export function turn(
  index: number,
  role: 'user' | 'assistant' = index % 2 === 0 ? 'user' : 'assistant',
): TranscriptItemReport {
  return {
    id: `item_${index}`,
    role,
    content: `turn ${index}`,
    timestamp: new Date(REFERENCE_MS + index * 1000).toISOString(),
    transcriptConfidence: role === 'user' ? 0.9 : null,
  };
}

export interface TestReporter {
  reporter: CallReporter;
  events: EventRecorder;
  logs: CapturingLogger;
}

/** A reporter with millisecond backoff, its events recorded and its logs captured. */
export function testReporter(options: Partial<ReporterOptions> & { baseUrl: string }): TestReporter {
  const events = recordReporterEvents();
  const logs = captureLogs();
  const reporter = createCallReporter({
    retryBaseDelayMs: 5,
    retryMaxDelayMs: 20,
    requestTimeoutMs: 5_000,
    logger: logs,
    onEvent: (event) => events.onEvent(event),
    ...options,
  });
  return { reporter, events, logs };
}
