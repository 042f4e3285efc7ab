/**
 * censorSecrets against a reference model: every value under a secret-bearing key, in any case and
 * at any depth, becomes `[redacted]`; everything else is kept in order; the input is never changed;
 * a value with nothing to censor comes back as the same object (nothing copied).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { censorSecrets, LOG_CENSOR_MAX_DEPTH, TOO_DEEP } from '../../src/logging/secret-censor.ts';

/** Credential names from the contract's environment table and HTTP, as they appear as keys. */
const SECRET_NAMES = [
  'authorization',
  'apiSecret',
  'CRM_API_KEY',
  'CALLSYNC_INGEST_TOKEN',
  'password',
  'token',
  'cookie',
];
const PLAIN_NAMES = ['callId', 'roomName', 'status', 'headers', 'detail', 'a', 'b', 'tokens', 'passwordHint'];
const isSecretName = (key: string) => SECRET_NAMES.some((name) => name.toLowerCase() === key.toLowerCase());

const key = fc.oneof(
  fc.constantFrom(...PLAIN_NAMES),
  fc.constantFrom(...SECRET_NAMES),
  fc.constantFrom(...SECRET_NAMES).map((name) => name.toUpperCase()),
);
const { value } = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null)),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(key, tie('value'), { maxKeys: 5 }),
  ),
}));

function reference(input: unknown): unknown {
  if (Array.isArray(input)) return input.map(reference);
  if (input === null || typeof input !== 'object') return input;
  return Object.fromEntries(
    Object.entries(input).map(([name, item]) => [name, isSecretName(name) ? '[redacted]' : reference(item)]),
  );
}

describe('censorSecrets', () => {
  it('censors exactly the secret-bearing keys, keeps the rest in order, and never changes its input', () => {
    fc.assert(
      fc.property(value, (input) => {
        const before = structuredClone(input);
        const censored = censorSecrets(input);
        expect(JSON.stringify(censored)).toBe(JSON.stringify(reference(input)));
        expect(input).toEqual(before);
        if (JSON.stringify(reference(input)) === JSON.stringify(input)) expect(censored).toBe(input);
      }),
      { numRuns: 500 },
    );
  });

  it('shares what it did not need to copy', () => {
    const untouched = { status: 200, nested: { list: [1, 2] } };
    const input = { headers: { authorization: 'Bearer x' }, untouched };
    const censored = censorSecrets(input);
    expect(censored).toEqual({ headers: { authorization: '[redacted]' }, untouched });
    expect(censored.untouched).toBe(untouched);
  });

  it(`writes an object nested deeper than ${LOG_CENSOR_MAX_DEPTH} levels as a marker`, () => {
    let deep: Record<string, unknown> = { token: 'x' };
    for (let level = 0; level < LOG_CENSOR_MAX_DEPTH + 2; level++) deep = { deeper: deep };
    expect(JSON.stringify(censorSecrets(deep))).not.toContain('"x"');
    expect(JSON.stringify(censorSecrets(deep))).toContain(TOO_DEEP);
  });
});
