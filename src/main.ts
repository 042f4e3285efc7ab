/**
 * `npm start` (compiled, `dist/main.js`) and `npm run dev` (from source): the supervisor
 * process. Reads the environment once, starts, and runs until a signal. The first SIGTERM/SIGINT drains (new calls get 503, calls that already ended finish
 * delivering, up to CALLSYNC_DRAIN_TIMEOUT_SECONDS), then everything else stays persisted for
 * the next start and the process exits 0. A second signal exits at once: nothing is lost by
 * that either, since every step is already in the store.
 */
import { createCallsyncApp } from './app.ts';
import { ConfigError, loadConfig } from './config.ts';
import { flushLogs } from './logging/logger.ts';
import { RecordingError } from './services/storage/index.ts';

let config;
try {
  config = loadConfig();
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`callsync: ${error.message}\n`);
    process.exit(1);
  }
  throw error;
}

const app = createCallsyncApp(config);
const { logger } = app;

process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled rejection'));

/** Exits once the lines logged so far are out (the last ones say why the process stopped). */
async function exitWhenLogged(code: number): Promise<never> {
  await flushLogs(logger);
  process.exit(code);
}

let stopping = false;
function onSignal(signal: NodeJS.Signals): void {
  if (stopping) {
    logger.warn({ signal }, 'second signal: exiting now; unfinished calls resume on the next start');
    process.exit(0);
  }
  stopping = true;
  logger.info({ signal }, 'draining');
  void app
    .drain()
    .then(() => app.close())
    .then(
      () => {
        logger.info('stopped');
        return exitWhenLogged(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        return exitWhenLogged(1);
      },
    );
}
process.on('SIGTERM', onSignal);
process.on('SIGINT', onSignal);

try {
  const { url } = await app.start();
  logger.info({ url }, 'callsync ready');
} catch (error) {
  // A deployment mistake (the recordings volume not mounted) gets one line a person can act on.
  if (error instanceof RecordingError) process.stderr.write(`callsync: ${error.message}\n`);
  logger.fatal({ err: error }, 'callsync could not start');
  await app.close().catch(() => undefined);
  await exitWhenLogged(1);
}
