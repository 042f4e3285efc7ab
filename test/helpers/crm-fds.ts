/**
 * Linux-only views of this process's open files (`/proc/self/fd`), to prove the CRM client
 * closes the recordings it streams and reads them progressively rather than whole.
 * Synchronous on purpose: it is called from inside the client's `onRequest` hook, where the
 * state must be caught before the client goes on to close the file.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export const CAN_INSPECT_FDS = process.platform === 'linux';

/** Descriptors of this process open on `path`, with their read offsets. */
export function openDescriptorsOn(path: string): { fd: number; position: number }[] {
  const found: { fd: number; position: number }[] = [];
  for (const name of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${name}`);
    } catch {
      continue; // closed meanwhile (e.g. the descriptor readdir itself used)
    }
    if (target !== path) continue;
    const info = readFileSync(`/proc/self/fdinfo/${name}`, 'utf8');
    const position = Number(/^pos:\s+(\d+)/m.exec(info)?.[1] ?? Number.NaN);
    found.push({ fd: Number(name), position });
  }
  return found;
}
