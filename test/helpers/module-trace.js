/**
 * A node `--import` for tests: appends the URL of every module the process resolves through the
 * ESM loader (its own `import`s and `import()`s) to the file named by `CALLSYNC_TEST_MODULE_TRACE`,
 * one per line, so a test can tell which packages a callsync process loaded.
 */
/* global process */
import { register } from 'node:module';

const file = process.env.CALLSYNC_TEST_MODULE_TRACE;
if (file) register('./module-trace-hooks.js', import.meta.url, { data: { file } });
