/**
 * Crash-and-restore helpers shared by the model tests of both machines.
 */

/** Every armed timer's due time in a persisted snapshot (timers are invoked `timer` actors). */
export function armedTimerDues(persisted: unknown): number[] {
  const dues: number[] = [];
  const visit = (snapshot: unknown) => {
    const children = (snapshot as { children?: Record<string, unknown> }).children ?? {};
    for (const child of Object.values(children)) {
      const entry = child as { src?: unknown; snapshot?: { status?: string; input?: { at?: unknown } } };
      if (
        entry.src === 'timer' &&
        entry.snapshot?.status === 'active' &&
        typeof entry.snapshot.input?.at === 'number'
      ) {
        dues.push(entry.snapshot.input.at);
      }
      if (entry.snapshot !== undefined) visit(entry.snapshot);
    }
  };
  visit(persisted);
  return dues.sort((a, b) => a - b);
}

/** How long the process stays down at most. */
export const DOWNTIME_MS = 45_000;

/**
 * Where the clock should stand when the restored actor starts. When the next step is a timer
 * (due at `nextDue`), time moves past it while down, so the restored timer must fire at once;
 * otherwise time moves on but stops short of every armed timer, so the next step is still the
 * one the model expects.
 */
export function restartTime(now: number, dues: number[], nextDue: number | null): number {
  if (nextDue !== null) {
    const later = dues.find((due) => due > nextDue) ?? Number.POSITIVE_INFINITY;
    return Math.max(now, nextDue + Math.min(DOWNTIME_MS, later - nextDue - 1));
  }
  const first = dues.find((due) => due >= now) ?? Number.POSITIVE_INFINITY;
  return Math.max(now, now + Math.min(DOWNTIME_MS, first - now - 1));
}
