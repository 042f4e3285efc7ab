/** `callsync status`: `GET /v1/status`, the 30-second answer. */
import type { CallsyncStatus } from '../supervisor/call-api.ts';
import type { ApiClient } from './client.ts';
import { percent, table } from './format.ts';
import { EXIT_OK, print, printJson } from './output.ts';

export function renderStatus(status: CallsyncStatus): string {
  const window = (name: string, w: CallsyncStatus['delivery']['lastHour']) => [
    name,
    percent(w.share),
    `${w.withinTarget} of ${w.finished}`,
    w.latencySeconds === null
      ? '—'
      : `${w.latencySeconds.p50} / ${w.latencySeconds.p95} / ${w.latencySeconds.p99} s`,
  ];
  const states = Object.entries(status.callsByState).sort(([a], [b]) => a.localeCompare(b));
  return [
    `Delivered within ${status.targetSeconds} s of call end`,
    table(
      ['WINDOW', 'SHARE', 'CALLS', 'P50 / P95 / P99'],
      [window('last hour', status.delivery.lastHour), window('last day', status.delivery.lastDay)],
    ),
    '',
    'Calls by state',
    states.length === 0
      ? '(none)'
      : table(
          ['STATE', 'CALLS'],
          states.map(([state, count]) => [state, String(count)]),
        ),
    '',
    `Failed calls waiting for an operator: ${status.failedWaiting}`,
  ].join('\n');
}

export async function statusCommand(client: ApiClient, json: boolean): Promise<number> {
  const status = await client.get<CallsyncStatus>('/v1/status');
  if (json) printJson(status);
  else print(renderStatus(status));
  return EXIT_OK;
}
