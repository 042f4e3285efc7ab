/** Plain-text output of the CLI: aligned tables, times, durations and a call's timeline. */

/** Left-aligned columns two spaces apart; the header row first. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** `2025-10-29 14:03:07Z`: to the second, UTC. */
export function shortTime(iso: string | null | undefined): string {
  if (!iso) return '-';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return `${date.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

/** `+1.25 s`, `+2 min 5 s`: how long after the first entry. */
export function offset(ms: number): string {
  if (ms < 60_000) return `+${(ms / 1_000).toFixed(2)} s`;
  const minutes = Math.floor(ms / 60_000);
  return `+${minutes} min ${Math.round((ms % 60_000) / 1_000)} s`;
}

export function percent(share: number | null): string {
  return share === null ? '-' : `${(share * 100).toFixed(1)} %`;
}

/** One journal entry's detail as `key=value` pairs (an error as its code and message). */
export function describeDetail(detail: Record<string, unknown> | undefined): string {
  if (!detail) return '';
  const parts: string[] = [];
  for (const [key, value] of Object.entries(detail)) {
    if (value === null || value === undefined) continue;
    if (key === 'type') continue;
    if (key === 'error' && typeof value === 'object') {
      const error = value as { code?: unknown; message?: unknown; status?: unknown };
      const status = typeof error.status === 'number' ? ` ${error.status}` : '';
      const code = typeof error.code === 'string' ? error.code : 'ERROR';
      const message = typeof error.message === 'string' ? error.message : '';
      parts.push(`error=${code}${status} "${message}"`);
    } else if (typeof value === 'object') {
      parts.push(`${key}=${JSON.stringify(value)}`);
    } else {
      const text = typeof value === 'string' ? value : JSON.stringify(value);
      parts.push(`${key}=${text.includes(' ') ? `"${text}"` : text}`);
    }
  }
  const text = parts.join(' ');
  return text.length > 160 ? `${text.slice(0, 157)}...` : text;
}
