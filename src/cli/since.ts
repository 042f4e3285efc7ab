/** `--since`: an ISO-8601 time, or a duration back from now (`30m`, `1h`, `2d`). */
import { UsageError } from './output.ts';

const UNIT_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseSince(value: string, nowMs = Date.now()): string {
  const relative = /^(\d+(?:\.\d+)?)([smhd])$/.exec(value.trim());
  if (relative) return new Date(nowMs - Number(relative[1]) * UNIT_MS[relative[2]!]!).toISOString();
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) {
    throw new UsageError(`--since ${value}: expected an ISO-8601 time or a duration like 30m, 1h, 1d`);
  }
  return new Date(ms).toISOString();
}
