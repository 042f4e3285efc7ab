/**
 * How many HTTP connections callsync serves at once (README, "Limits"): beyond the cap new
 * connections are refused at once, so slow or idle clients cannot take the descriptors that the
 * CRM uploads (a file and a socket each), storage reads and store connections need.
 *
 * Policy: half the process's open-files limit as it starts (Node raises the soft limit to the
 * hard one at start-up), so a 1,024 limit gives 512 and a container's 1,048,576 gives plenty
 * for every agent of a large call center; `CALLSYNC_MAX_CONNECTIONS` sets it outright. Where the
 * limit cannot be read (not Linux), `HTTP_MAX_CONNECTIONS_FALLBACK`.
 */
import { readFileSync } from 'node:fs';

export const HTTP_MAX_CONNECTIONS_FALLBACK = 512;
/** The other half of the descriptors stays for outbound work; never fewer than this inbound. */
const HTTP_MAX_CONNECTIONS_MIN = 64;

/** The soft "Max open files" of a `/proc/<pid>/limits` text; null when absent or unlimited. */
export function openFilesLimitOf(limitsText: string): number | null {
  const match = /^Max open files\s+(\d+|unlimited)\s/m.exec(limitsText);
  if (match === null || match[1] === 'unlimited') return null;
  return Number(match[1]);
}

/** The cap for a process whose open-files limit is `openFiles` (null: unknown). */
export function connectionCapFor(openFiles: number | null): number {
  if (openFiles === null) return HTTP_MAX_CONNECTIONS_FALLBACK;
  return Math.max(HTTP_MAX_CONNECTIONS_MIN, Math.floor(openFiles / 2));
}

/** This process's cap, from its own limits. */
export function defaultConnectionCap(): number {
  let text: string;
  try {
    text = readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return HTTP_MAX_CONNECTIONS_FALLBACK;
  }
  return connectionCapFor(openFilesLimitOf(text));
}
