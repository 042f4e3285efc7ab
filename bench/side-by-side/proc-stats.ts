/**
 * CPU time and peak memory of another process, read from Linux's `/proc/<pid>/stat` (utime and
 * stime, fields 14 and 15, in clock ticks) and `/proc/<pid>/status` (VmHWM, the resident set's
 * high-water mark, in KiB).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** `getconf CLK_TCK`; 100 on every Linux this runs on, asked once anyway. */
const CLOCK_TICKS_PER_SECOND =
  Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** User + system CPU time the process has used so far, in milliseconds. */
export function cpuTimeMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) is in parentheses and may hold spaces: count fields after it.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state), so utime (14) is fields[11] and stime (15) fields[12].
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}

/** The process's peak resident set size so far, in MiB. */
export function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(status);
  if (!match) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Number(match[1]) / 1024;
}

/** The processes' CPU time so far, summed, in milliseconds. */
export function totalCpuTimeMs(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + cpuTimeMs(pid), 0);
}

/** The processes' peak resident sets, summed (each process's own high-water mark), in MiB. */
export function totalPeakRssMiB(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + peakRssMiB(pid), 0);
}
