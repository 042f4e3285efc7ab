#!/usr/bin/env node
// The `callsync` command (package.json "bin"): the compiled CLI, src/cli/main.ts, built to
// dist/cli/ by `npm run build` (which `npm ci` runs as the prepare step).
/* global process */
import { main } from '../dist/cli/main.js';

process.exitCode = await main(process.argv);
