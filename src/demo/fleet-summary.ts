/**
 * The fleet demo's own section of the summary: who was killed and with how many calls, the
 * take-overs (the supervisors' `call taken over` log lines) and how long after the kill they
 * came, which instance owns each call at the end (`GET /v1/calls/{id}` `owner`, through the
 * proxy), what the agents' client had to send again, and what the CRM sandbox saw: requests
 * repeated under an Idempotency-Key, and whether any key was accepted twice. Pure: fleet-demo.ts
 * collects the inputs, this file only counts and formats.
 */
import type { CrmSandboxReceived } from '../sandbox/crm/index.ts';
import type { FleetKill, FleetTakeOver } from './fleet.ts';
import type { RoundRobinProxyStats } from './round-robin-proxy.ts';

/** What happened to the instance that was killed. */
export interface FleetFaultReport {
  kill: FleetKill | null;
  /** The take-over of each of its calls, in the order of `kill.callIds`. */
  takeOvers: FleetTakeOver[];
  restartedPid: number | null;
  /** The proxy's count of requests forwarded to the instance when its restart was ready. */
  forwardedAtRestart: number | null;
  /** Why the fault did not run to its end (a take-over that never came); null when it did. */
  error: string | null;
}

export interface FleetSectionInput {
  instanceIds: readonly string[];
  leaseSeconds: number;
  schema: string;
  proxyUrl: string;
  /** Null when no kill was attempted (the run broke off before half the calls had started). */
  fault: FleetFaultReport | null;
  /** Every `call taken over` line of every process. */
  takeOvers: readonly FleetTakeOver[];
  /** By call id: the owning instance at the end, null when it could not be read. */
  owners: ReadonlyMap<string, string | null>;
  received: CrmSandboxReceived;
  /** The agents' client: attempts sent again, by why. */
  agentRetries: Record<string, number>;
  proxy: RoundRobinProxyStats;
}

export interface FleetSection {
  instanceIds: string[];
  leaseSeconds: number;
  schema: string;
  proxyUrl: string;
  kill: {
    instanceId: string;
    pid: number;
    callsInProgress: number;
    restartedPid: number | null;
    /** Requests the proxy sent the restarted process (any instance answers any request). */
    requestsSinceRestart: number | null;
  } | null;
  faultError: string | null;
  /** Instance id (or `unknown`) → calls it owns at the end. */
  ownersAtEnd: Record<string, number>;
  takeOvers: {
    /** Every `call taken over` line. */
    total: number;
    /** Of those, the killed instance's calls, after the kill. */
    ofKilled: number;
    /** Taker → how many (of the killed instance's calls). */
    byInstance: Record<string, number>;
    /** First and last take-over of the killed instance's calls, after the kill. */
    firstDelayMs: number | null;
    lastDelayMs: number | null;
  };
  agentRetries: Record<string, number>;
  proxy: RoundRobinProxyStats;
  crm: {
    /** Requests repeating an Idempotency-Key, answered with the first answer. */
    duplicates: { upload: number; callData: number };
    /** Distinct keys with an accepted effect (a stored upload, a stored call-data document). */
    acceptedKeys: { upload: number; callData: number };
    /** Keys with more than one accepted effect: must be none. */
    keysAcceptedTwice: string[];
  };
  /** The kill ran, every call it left was taken over, no key was accepted twice. */
  ok: boolean;
}

function keysSeenTwice(keys: readonly (string | null)[]): string[] {
  const seen = new Map<string, number>();
  for (const key of keys) if (key !== null) seen.set(key, (seen.get(key) ?? 0) + 1);
  return [...seen].filter(([, times]) => times > 1).map(([key]) => key);
}

export function buildFleetSection(input: FleetSectionInput): FleetSection {
  const { fault, received } = input;
  const kill = fault?.kill ?? null;
  const ownersAtEnd: Record<string, number> = {};
  for (const owner of input.owners.values()) {
    const name = owner ?? 'unknown';
    ownersAtEnd[name] = (ownersAtEnd[name] ?? 0) + 1;
  }
  const ofKilled = fault?.takeOvers ?? [];
  const byInstance: Record<string, number> = {};
  for (const line of ofKilled) byInstance[line.by] = (byInstance[line.by] ?? 0) + 1;
  const delays = kill === null ? [] : ofKilled.map((line) => line.atMs - kill.atMs).sort((a, b) => a - b);
  const keysAcceptedTwice = [
    ...keysSeenTwice(received.uploads.map((upload) => upload.idempotencyKey)),
    ...keysSeenTwice(received.callData.map((item) => item.idempotencyKey)),
  ];
  const distinct = (keys: readonly (string | null)[]) => new Set(keys.filter((key) => key !== null)).size;
  return {
    instanceIds: [...input.instanceIds],
    leaseSeconds: input.leaseSeconds,
    schema: input.schema,
    proxyUrl: input.proxyUrl,
    kill:
      kill === null
        ? null
        : {
            instanceId: kill.instanceId,
            pid: kill.pid,
            callsInProgress: kill.callIds.length,
            restartedPid: fault?.restartedPid ?? null,
            requestsSinceRestart:
              fault?.forwardedAtRestart == null
                ? null
                : (input.proxy.forwarded[kill.instanceId] ?? 0) - fault.forwardedAtRestart,
          },
    faultError: fault?.error ?? (fault === null ? 'no instance was killed' : null),
    ownersAtEnd,
    takeOvers: {
      total: input.takeOvers.length,
      ofKilled: ofKilled.length,
      byInstance,
      firstDelayMs: delays[0] ?? null,
      lastDelayMs: delays.at(-1) ?? null,
    },
    agentRetries: { ...input.agentRetries },
    proxy: input.proxy,
    crm: {
      duplicates: { upload: received.duplicates.upload, callData: received.duplicates['call-data'] },
      acceptedKeys: {
        upload: distinct(received.uploads.map((upload) => upload.idempotencyKey)),
        callData: distinct(received.callData.map((item) => item.idempotencyKey)),
      },
      keysAcceptedTwice,
    },
    ok:
      kill !== null &&
      fault?.error === null &&
      ofKilled.length === kill.callIds.length &&
      keysAcceptedTwice.length === 0,
  };
}

const counts = (record: Record<string, number>, separator = ' ') =>
  Object.entries(record)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, times]) => `${name}${separator}${times}`)
    .join(', ');
const sum = (record: Record<string, number>) => Object.values(record).reduce((total, n) => total + n, 0);
const seconds = (ms: number | null) => (ms === null ? '–' : `${(ms / 1000).toFixed(2)} s`);

export function formatFleetSection(section: FleetSection): string {
  const line = (label: string, value: string | number, note = '') =>
    `  ${label.padEnd(22)}${String(value).padStart(8)}${note ? `   ${note}` : ''}`;
  const { kill, takeOvers, crm } = section;
  const out = [
    '',
    `Fleet: ${section.instanceIds.length} supervisor processes (${section.instanceIds.join(', ')}) on PostgreSQL schema ${section.schema}, lease ${section.leaseSeconds} s, behind the round-robin proxy ${section.proxyUrl}`,
  ];
  if (kill !== null) {
    out.push(
      line(
        'killed (SIGKILL)',
        kill.instanceId,
        `pid ${kill.pid}, with ${kill.callsInProgress} calls in progress, when half the calls had started`,
      ),
      line(
        'its calls taken over',
        `${takeOvers.ofKilled}/${kill.callsInProgress}`,
        takeOvers.ofKilled > 0 ? `by ${counts(takeOvers.byInstance, ' ×')}` : '',
      ),
      line(
        'take-over delay',
        seconds(takeOvers.firstDelayMs),
        `kill → first 'call taken over' line; last ${seconds(takeOvers.lastDelayMs)} (bound: the ${section.leaseSeconds} s lease + a sweep)`,
      ),
      line(
        'restarted',
        kill.restartedPid === null ? 'no' : kill.instanceId,
        kill.restartedPid === null
          ? ''
          : `pid ${kill.restartedPid}, same id and port, once its calls had moved; it answered ${kill.requestsSinceRestart ?? 0} requests since`,
      ),
    );
  }
  out.push(
    line('take-overs in all', takeOvers.total, "'call taken over' log lines of every process"),
    line('calls by owner at end', sum(section.ownersAtEnd), counts(section.ownersAtEnd)),
    line(
      'agent requests retried',
      sum(section.agentRetries),
      sum(section.agentRetries) > 0
        ? counts(section.agentRetries, ' ×')
        : 'none needed (503 or a broken connection would be sent again)',
    ),
    line(
      'proxy forwarded',
      sum(section.proxy.forwarded),
      `${counts(section.proxy.forwarded)}${sum(section.proxy.refused) > 0 ? `; refused (skipped) ${counts(section.proxy.refused, ' ×')}` : ''}`,
    ),
    line(
      'CRM duplicate requests',
      crm.duplicates.upload + crm.duplicates.callData,
      `upload ${crm.duplicates.upload}, call-data ${crm.duplicates.callData} (same Idempotency-Key, answered with the first answer)`,
    ),
    line(
      'keys accepted twice',
      crm.keysAcceptedTwice.length,
      crm.keysAcceptedTwice.length === 0
        ? `one accepted effect per Idempotency-Key: ${crm.acceptedKeys.upload} uploads, ${crm.acceptedKeys.callData} call-data documents`
        : crm.keysAcceptedTwice.join(', '),
    ),
    '',
  );
  if (section.ok) {
    out.push(
      `OK: ${kill?.instanceId ?? 'an instance'} was killed with ${kill?.callsInProgress ?? 0} calls in progress, the fleet took them over, and no Idempotency-Key was accepted twice.`,
    );
  } else {
    out.push(
      `FAILED (fleet): ${[
        section.faultError,
        kill !== null && takeOvers.ofKilled < kill.callsInProgress
          ? `${kill.callsInProgress - takeOvers.ofKilled} of the killed instance's calls not taken over`
          : null,
        crm.keysAcceptedTwice.length > 0 ? `${crm.keysAcceptedTwice.length} key(s) accepted twice` : null,
      ]
        .filter((reason): reason is string => reason !== null)
        .join('; ')}`,
    );
  }
  return `${out.join('\n')}\n`;
}
