/**
 * The fleet demo as a function: the normal demo's batch of calls (`runDemo`) pushed through the
 * fleet's proxy, and when half of them have started, the fault: SIGKILL the instance driving the
 * most calls, wait until the others have taken every one of them over (their `call taken over`
 * log lines), then restart it under the same id and port, so the end shows it back and taking
 * calls again. Then the usual summary and the fleet's section (fleet-summary.ts). It starts and
 * stops nothing: the caller owns the fleet (main.ts, or the test).
 */
import type { DemoFleet } from './fleet.ts';
import { buildFleetSection, type FleetFaultReport, type FleetSection } from './fleet-summary.ts';
import { runPooled } from './pool.ts';
import { runDemo, type RunDemoOptions } from './run-demo.ts';
import type { DemoSummary } from './summary.ts';

/** How long the killed instance's calls may take to move before the demo says they did not. */
const TAKEOVER_WAIT_MS = 30_000;
/** Reading the owners back afterwards, a few at a time. */
const READ_CONCURRENCY = 10;

export interface FleetDemoResult {
  summary: DemoSummary;
  fleet: FleetSection;
  /** Every call reached the CRM, and the fleet's section holds (see `FleetSection.ok`). */
  ok: boolean;
}

async function killAndRestart(fleet: DemoFleet, progress: (line: string) => void): Promise<FleetFaultReport> {
  const report: FleetFaultReport = {
    kill: null,
    takeOvers: [],
    restartedPid: null,
    forwardedAtRestart: null,
    error: null,
  };
  try {
    const kill = await fleet.killBusiest();
    report.kill = kill;
    progress(`killed ${kill.instanceId} (pid ${kill.pid}) with ${kill.callIds.length} calls in progress`);
    report.takeOvers = await fleet.waitTakenOver(kill, TAKEOVER_WAIT_MS);
    if (report.takeOvers.length > 0) {
      const takers = [...new Set(report.takeOvers.map((line) => line.by))].sort().join(' and ');
      const firstMs = Math.min(...report.takeOvers.map((line) => line.atMs)) - kill.atMs;
      progress(
        `${takers} took over its ${report.takeOvers.length} calls, the first ${(firstMs / 1000).toFixed(1)} s after the kill (lease ${fleet.leaseSeconds} s)`,
      );
    }
    const child = await fleet.restart(kill.instanceId);
    report.restartedPid = child.pid;
    report.forwardedAtRestart = fleet.proxy.stats().forwarded[kill.instanceId] ?? 0;
    progress(`restarted ${kill.instanceId} (pid ${child.pid}) under the same id and port`);
  } catch (error) {
    report.error = error instanceof Error ? error.message : String(error);
    progress(`the fault did not run to its end: ${report.error}`);
  }
  return report;
}

export async function runFleetDemo(
  options: Omit<RunDemoOptions, 'services' | 'onCallStarted'> & { fleet: DemoFleet },
): Promise<FleetDemoResult> {
  const { fleet, ...rest } = options;
  const progress = options.onProgress ?? (() => undefined);
  let fault: Promise<FleetFaultReport> | undefined;
  const summary = await runDemo({
    ...rest,
    services: fleet,
    onCallStarted: (started, total) => {
      if (fault === undefined && started >= Math.ceil(total / 2)) fault = killAndRestart(fleet, progress);
    },
  });
  const report = fault === undefined ? null : await fault;

  const owners = new Map<string, string | null>();
  await runPooled(summary.rows, { concurrency: READ_CONCURRENCY, staggerMs: 0 }, async (row) => {
    if (row.callId === null) return;
    const view = (await fleet.api.get(`/v1/calls/${row.callId}`).catch(() => null)) as {
      owner?: { instanceId?: unknown } | null;
    } | null;
    const owner = view?.owner?.instanceId;
    owners.set(row.callId, typeof owner === 'string' ? owner : null);
  });
  const section = buildFleetSection({
    instanceIds: fleet.instances.map((instance) => instance.id),
    leaseSeconds: fleet.leaseSeconds,
    schema: fleet.schema,
    proxyUrl: fleet.proxy.url,
    fault: report,
    takeOvers: fleet.takeOvers(),
    owners,
    received: fleet.crm.received(),
    agentRetries: fleet.api.retried(),
    proxy: fleet.proxy.stats(),
  });
  return { summary, fleet: section, ok: summary.ok && section.ok };
}
