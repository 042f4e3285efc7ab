/**
 * The logging policy, read off the lines a real pino logger writes: secrets never reach a log
 * line, at any depth, in objects, arrays, errors and child bindings; everything else is written as
 * logged; the caller's object is never changed. The secret names come from the contract's
 * environment table and the HTTP headers that carry credentials, not from the censor's list.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, type Logger } from '../../src/logging/logger.ts';

const SECRET = 'sEcReT-VaLuE-42';

/** The contract's secret-bearing variables, and the credential headers, as keys of a logged object. */
const SECRET_NAMES = [
  'LIVEKIT_API_SECRET',
  'CRM_API_KEY',
  'CALLSYNC_INGEST_TOKEN',
  'CALLSYNC_ADMIN_TOKEN',
  'CALLSYNC_S3_SECRET_ACCESS_KEY',
  'CALLSYNC_S3_SESSION_TOKEN',
  'CALLSYNC_AZURE_ACCOUNT_KEY',
  'authorization',
  'Authorization',
  'cookie',
  'apiSecret',
  'apiKey',
  'secretAccessKey',
  'sessionToken',
  'accountKey',
  'token',
  'password',
];

function capture(level = 'info'): {
  logger: Logger;
  lines: () => Record<string, unknown>[];
  raw: () => string;
} {
  let raw = '';
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      raw += chunk.toString('utf8');
      done();
    },
  });
  // pino writes to a plain stream synchronously (stream.write), so a line is there once the call returns.
  const logger = createLogger({ level, destination: { write: (line: string) => destination.write(line) } });
  return {
    logger,
    raw: () => raw,
    lines: () =>
      raw
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

describe('log lines', () => {
  it.each(SECRET_NAMES)(
    'censor %s at the top level and three levels down, keeping its neighbours',
    (name) => {
      const out = capture();
      out.logger.info(
        {
          [name]: SECRET,
          callId: 'call-1',
          config: { livekit: { [name]: SECRET, url: 'wss://lk.example' } },
        },
        'configured',
      );
      expect(out.raw()).not.toContain(SECRET);
      const [line] = out.lines();
      expect(line).toMatchObject({
        [name]: '[redacted]',
        callId: 'call-1',
        config: { livekit: { [name]: '[redacted]', url: 'wss://lk.example' } },
        msg: 'configured',
      });
    },
  );

  it('censor secrets deeper than pino’s paths reached, inside arrays too', () => {
    const out = capture();
    const deep = { a: { b: { c: { d: { e: { headers: { Authorization: `Bearer ${SECRET}` } } } } } } };
    out.logger.warn(
      { deep, attempts: [{ status: 503 }, { request: { headers: { authorization: SECRET } } }] },
      'x',
    );
    expect(out.raw()).not.toContain(SECRET);
    expect(out.lines()[0]).toMatchObject({
      deep: { a: { b: { c: { d: { e: { headers: { Authorization: '[redacted]' } } } } } } },
      attempts: [{ status: 503 }, { request: { headers: { authorization: '[redacted]' } } }],
    });
  });

  it('write an error with its type, message and stack, its secret properties censored, the error itself untouched', () => {
    class CrmRejected extends Error {
      readonly code = 'CRM_REJECTED';
      details = { status: 401, request: { headers: { authorization: `Bearer ${SECRET}` } } };
      token = SECRET;
    }
    const error = new CrmRejected('the CRM refused the upload', { cause: new Error('socket hang up') });
    const out = capture();
    out.logger.error({ err: error, callId: 'call-2' }, 'upload failed');
    expect(out.raw()).not.toContain(SECRET);
    const err = out.lines()[0]!.err as Record<string, unknown>;
    expect(err).toMatchObject({
      type: 'CrmRejected',
      message: 'the CRM refused the upload: socket hang up',
      code: 'CRM_REJECTED',
      token: '[redacted]',
      details: { status: 401, request: { headers: { authorization: '[redacted]' } } },
    });
    expect(err.stack).toContain('Error: the CRM refused the upload\n    at ');
    expect(err.stack).toContain('caused by: Error: socket hang up');
    expect(error.token).toBe(SECRET);
    expect(error.details.request.headers.authorization).toBe(`Bearer ${SECRET}`);
  });

  it('censor the errors an AggregateError holds', () => {
    const inner = Object.assign(new Error('refused'), { password: SECRET });
    const out = capture();
    out.logger.error(
      { err: new AggregateError([inner, new Error('timeout')], 'every try failed') },
      'gave up',
    );
    expect(out.raw()).not.toContain(SECRET);
    const err = out.lines()[0]!.err as { aggregateErrors: Record<string, unknown>[] };
    expect(err.aggregateErrors.map((e) => e.message)).toEqual(['refused', 'timeout']);
    expect(err.aggregateErrors[0]).toMatchObject({ password: '[redacted]' });
    expect(inner.password).toBe(SECRET);
  });

  it('censor child bindings, a child’s child’s too, each child keeping its parents’ bindings', () => {
    const out = capture();
    const child = out.logger.child({ component: 'storage', credentials: { private_key: SECRET } });
    child.info('one');
    child.info({ settings: { accountKey: SECRET, container: 'recordings' } }, 'two');
    child.child({ callId: 'call-4', headers: { cookie: SECRET } }, { level: 'debug' }).debug('three');
    expect(out.raw()).not.toContain(SECRET);
    expect(out.lines()).toMatchObject([
      { component: 'storage', credentials: '[redacted]', msg: 'one' },
      { component: 'storage', settings: { accountKey: '[redacted]', container: 'recordings' }, msg: 'two' },
      {
        component: 'storage',
        credentials: '[redacted]',
        callId: 'call-4',
        headers: { cookie: '[redacted]' },
        msg: 'three',
      },
    ]);
  });

  it('censor what an object’s toJSON returns, as that is what reaches the line', () => {
    class StorageSettings {
      constructor(private readonly key: string) {}
      toJSON() {
        return { bucket: 'recordings', secretAccessKey: this.key };
      }
    }
    const out = capture();
    out.logger.info(
      { settings: new StorageSettings(SECRET), at: new Date(0), url: new URL('https://crm.example/upload') },
      'x',
    );
    expect(out.raw()).not.toContain(SECRET);
    expect(out.lines()[0]).toMatchObject({
      settings: { bucket: 'recordings', secretAccessKey: '[redacted]' },
      at: '1970-01-01T00:00:00.000Z',
      url: 'https://crm.example/upload',
    });
  });

  it('censor a frozen object and leave it as it was', () => {
    const config = Object.freeze({ CRM_API_KEY: SECRET, CRM_BASE_URL: 'https://crm.example' });
    const out = capture();
    out.logger.info({ config }, 'start');
    expect(out.raw()).not.toContain(SECRET);
    expect(out.lines()[0]).toMatchObject({
      config: { CRM_API_KEY: '[redacted]', CRM_BASE_URL: 'https://crm.example' },
    });
    expect(config.CRM_API_KEY).toBe(SECRET);
  });

  it('write a cyclic object without its secret, its cycle marked, and carry on', () => {
    const loop: Record<string, unknown> = { name: 'loop', token: SECRET };
    loop.self = loop;
    loop.again = [loop, loop];
    const out = capture();
    out.logger.info({ loop }, 'cyclic');
    out.logger.info('after');
    expect(out.raw()).not.toContain(SECRET);
    expect(out.lines().map((line) => line.msg)).toEqual(['cyclic', 'after']);
    expect(out.lines()[0]).toMatchObject({
      loop: { name: 'loop', token: '[redacted]', self: '[Circular]', again: ['[Circular]', '[Circular]'] },
    });
  });

  it('write a graph of objects that all refer to each other, each walked once', () => {
    // Walked path by path, 4 references an object to depth 12 is 4^12 = 16.7 million visits.
    const nodes: Record<string, unknown>[] = [0, 1, 2, 3].map((n) => ({ n, token: SECRET }));
    for (const node of nodes) nodes.forEach((other, index) => (node[`to${index}`] = other));
    const out = capture();
    out.logger.info({ graph: nodes[0] }, 'graph');
    out.logger.info('after');
    expect(out.raw()).not.toContain(SECRET);
    expect(out.lines().map((line) => line.msg)).toEqual(['graph', 'after']);
    expect(out.lines()[0]).toMatchObject({ graph: { n: 0, token: '[redacted]', to0: '[Circular]' } });
  });

  it('write what a throwing getter hides as unreadable, and the rest of the line as logged', () => {
    const unreadable = {
      fine: 1,
      get broken(): never {
        throw new Error('no');
      },
    };
    const out = capture();
    out.logger.info({ unreadable, token: SECRET, callId: 'call-5' }, 'odd');
    out.logger.info('after');
    expect(out.raw()).not.toContain(SECRET);
    expect(out.lines()).toMatchObject([
      { msg: 'odd', callId: 'call-5', token: '[redacted]', unreadable: { fine: 1, broken: '[unreadable]' } },
      { msg: 'after' },
    ]);
  });

  it('censor the values a message interpolates (%j, %o), and a non-string message', () => {
    const out = capture();
    out.logger.info('settings %j', { token: SECRET, bucket: 'recordings' });
    out.logger.info({ callId: 'call-6' }, 'headers %o', { headers: { authorization: `Bearer ${SECRET}` } });
    // A message that is no string, as untyped JavaScript can pass one.
    Reflect.apply(out.logger.info, out.logger, [{ callId: 'call-7' }, { password: SECRET }]);
    expect(out.raw()).not.toContain(SECRET);
    const [first, second] = out.lines();
    expect(first!.msg).toBe('settings {"token":"[redacted]","bucket":"recordings"}');
    expect(second).toMatchObject({ callId: 'call-6' });
    expect(second!.msg).toContain('[redacted]');
  });

  it('censor setBindings, and a child’s own formatters.log cannot bypass the censor', () => {
    const out = capture();
    const child = out.logger.child({ component: 'x' });
    child.setBindings({ token: SECRET, component: 'y' });
    child.info('one');
    out.logger.child({ a: 1 }, { formatters: { log: (object) => object } }).info({ password: SECRET }, 'two');
    expect(out.raw()).not.toContain(SECRET);
    expect(out.lines()).toMatchObject([
      { component: 'y', token: '[redacted]', msg: 'one' },
      { a: 1, password: '[redacted]', msg: 'two' },
    ]);
  });

  it('censor as JSON.stringify writes: toJSON once (an error’s too, outside err), own keys of maps', () => {
    class Failure extends Error {
      readonly #token = SECRET;
      toJSON() {
        return { message: this.message, token: this.#token };
      }
    }
    class Inner {
      token = SECRET;
      toJSON() {
        return {};
      }
    }
    class Outer {
      inner = new Inner();
      toJSON() {
        return this.inner; // written as Inner's own keys: toJSON is applied once
      }
    }
    const out = capture();
    const map = Object.assign(new Map([['k', 'v']]), { token: SECRET });
    out.logger.info({ failure: new Failure('x'), outer: new Outer(), map }, 'json');
    expect(out.raw()).not.toContain(SECRET);
    expect(out.lines()[0]).toMatchObject({
      failure: { message: 'x', token: '[redacted]' },
      outer: { token: '[redacted]' },
      map: { token: '[redacted]' },
    });
  });

  it('write a frozen error, censored or not, without throwing at the caller', () => {
    const out = capture();
    out.logger.error({ err: Object.freeze(new Error('plain')) }, 'one');
    out.logger.error({ err: Object.freeze(Object.assign(new Error('secret'), { token: SECRET })) }, 'two');
    expect(out.raw()).not.toContain(SECRET);
    expect(out.lines()).toMatchObject([
      { msg: 'one', err: { message: 'plain' } },
      { msg: 'two', err: { message: 'secret', token: '[redacted]' } },
    ]);
  });

  it('write a line without secrets exactly as logged', () => {
    const out = capture();
    const fields = { from: 'inConversation', to: 'awaitingEgress', attempt: 2, tags: ['a', 'b'], at: null };
    out.logger
      .child({ callId: 'call-3', roomName: 'room-3', egressId: null })
      .info(fields, 'call inConversation → awaitingEgress');
    const { time, ...line } = out.lines()[0]!;
    expect(typeof time).toBe('string');
    expect(line).toEqual({
      level: 'info',
      service: 'callsync',
      callId: 'call-3',
      roomName: 'room-3',
      egressId: null,
      ...fields,
      msg: 'call inConversation → awaitingEgress',
    });
  });
});
