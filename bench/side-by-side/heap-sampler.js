/**
 * A node `--import` for the bench: samples every allocation of the process it is loaded into,
 * including the objects garbage collection has already freed (V8's sampling heap profiler with
 * `includeObjectsCollectedBy{Minor,Major}GC`), and writes the profile to
 * `$CALLSYNC_BENCH_HEAP_PROF_DIR/heap-<pid>.heapprofile` when the process exits. Node's own
 * `--heap-prof` keeps only what is still live at exit, which hides a burst's garbage: the bytes
 * that grow the heap and cost the collector. Read it with `bench/side-by-side/profile-top.ts`.
 */
/* global process */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

/** One sample per this many bytes allocated, on average (V8's default is 32 KiB). */
const SAMPLING_INTERVAL_BYTES = 16 * 1024;

const dir = process.env.CALLSYNC_BENCH_HEAP_PROF_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post('HeapProfiler.startSampling', {
    samplingInterval: SAMPLING_INTERVAL_BYTES,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  // A session connected to its own thread answers synchronously, so this runs within 'exit'.
  process.on('exit', () => {
    session.post('HeapProfiler.stopSampling', (error, result) => {
      if (error) process.stderr.write(`heap-sampler: ${error.message}\n`);
      else {
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(dir, `heap-${process.pid}.heapprofile`), JSON.stringify(result.profile));
      }
    });
  });
}
