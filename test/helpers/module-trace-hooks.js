/** The loader hooks of `module-trace.js`; they run on node's loader thread. */
import { appendFileSync } from 'node:fs';

let traceFile;

export function initialize({ file }) {
  traceFile = file;
}

export async function resolve(specifier, context, nextResolve) {
  const resolved = await nextResolve(specifier, context);
  appendFileSync(traceFile, `${resolved.url}\n`);
  return resolved;
}
