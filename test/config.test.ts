import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.ts';

const required = {
  LIVEKIT_URL: 'wss://example.livekit.cloud',
  LIVEKIT_API_KEY: 'APIkey',
  LIVEKIT_API_SECRET: 'super-secret-value',
  CRM_BASE_URL: 'https://crm.example/api/public/',
};

describe('loadConfig', () => {
  it('applies the contract defaults', () => {
    const config = loadConfig(required);
    expect(config).toMatchObject({
      http: { host: '127.0.0.1', port: 8080, ingestToken: undefined, maxConnections: undefined },
      store: { url: 'sqlite:./data/callsync.db' },
      recordingsDir: './recordings',
      uploadTargetSeconds: 30,
      // The README's tuning defaults.
      maxCallDurationSeconds: 14_400,
      egressDeadlineSeconds: 120,
      logLevel: 'info',
      crm: { baseUrl: 'https://crm.example/api/public', apiKey: undefined },
      fleet: { leaseSeconds: 5, instanceId: expect.stringMatching(new RegExp(`-${process.pid}$`)) as string },
    });
  });

  it('reads every variable', () => {
    const config = loadConfig({
      ...required,
      CRM_API_KEY: 'crm-key',
      CALLSYNC_HOST: '0.0.0.0',
      CALLSYNC_PORT: '9000',
      CALLSYNC_STORE: 'postgres://127.0.0.1:5432/test',
      CALLSYNC_RECORDINGS_DIR: '/mnt/recordings',
      CALLSYNC_INGEST_TOKEN: 'ingest',
      CALLSYNC_UPLOAD_TARGET_SECONDS: '45',
      CALLSYNC_INSTANCE_ID: 'callsync-eu-1',
      CALLSYNC_LEASE_SECONDS: '3',
      CALLSYNC_MAX_CONNECTIONS: '20000',
      LOG_LEVEL: 'debug',
    });
    expect(config).toMatchObject({
      fleet: { instanceId: 'callsync-eu-1', leaseSeconds: 3 },
      crm: { apiKey: 'crm-key' },
      http: { host: '0.0.0.0', port: 9000, ingestToken: 'ingest', maxConnections: 20_000 },
      store: { url: 'postgres://127.0.0.1:5432/test' },
      recordingsDir: '/mnt/recordings',
      uploadTargetSeconds: 45,
      logLevel: 'debug',
    });
  });

  it.each([
    [{ LIVEKIT_URL: undefined }, 'invalid configuration: LIVEKIT_URL is required'],
    [
      { LIVEKIT_URL: 'ftp://x' },
      'LIVEKIT_URL must be a URL starting with http:// or https:// or ws:// or wss://',
    ],
    [{ LIVEKIT_API_SECRET: '' }, 'invalid configuration: LIVEKIT_API_SECRET is required'],
    [{ CRM_BASE_URL: 'crm.example' }, 'CRM_BASE_URL must be a URL'],
    [{ CALLSYNC_PORT: 'eighty' }, 'CALLSYNC_PORT'],
    [{ CALLSYNC_PORT: '70000' }, 'CALLSYNC_PORT'],
    [{ CALLSYNC_STORE: 'mysql://x' }, 'CALLSYNC_STORE must be sqlite:<path> or postgres://'],
    [{ CALLSYNC_UPLOAD_TARGET_SECONDS: '-1' }, 'CALLSYNC_UPLOAD_TARGET_SECONDS'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ CALLSYNC_STORE: 'sqlite:' }, 'CALLSYNC_STORE sqlite: needs a path'],
    [{ CALLSYNC_STORE_TIMEOUT_MS: '0' }, 'CALLSYNC_STORE_TIMEOUT_MS'],
    [{ CALLSYNC_LEASE_SECONDS: '0.5' }, 'CALLSYNC_LEASE_SECONDS must be at least 1 second'],
    [{ CALLSYNC_LEASE_SECONDS: 'soon' }, 'CALLSYNC_LEASE_SECONDS must be a number of seconds'],
    [{ CALLSYNC_INSTANCE_ID: 'has space' }, 'CALLSYNC_INSTANCE_ID must be 1–128 letters'],
    [{ CALLSYNC_MAX_CONNECTIONS: '0' }, 'CALLSYNC_MAX_CONNECTIONS must be a positive number of connections'],
    [{ CALLSYNC_MAX_CONNECTIONS: '1.5' }, 'CALLSYNC_MAX_CONNECTIONS must be a whole number of connections'],
  ])('fails on %j with one line naming the variable', (override, expected) => {
    let error: unknown;
    try {
      loadConfig({ ...required, ...override });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message).toContain(expected);
    expect(message).not.toContain('\n');
    expect(message).not.toContain('super-secret-value');
  });
});

describe('loadConfig: every problem at once', () => {
  it('lists each bad or missing variable on its own line, once, and no secret', () => {
    let error: unknown;
    try {
      loadConfig({
        LIVEKIT_API_SECRET: 'super-secret-value',
        CALLSYNC_PORT: 'eighty',
        CALLSYNC_STORE: 'sqlite:',
        CALLSYNC_EGRESS_STORAGE: 's3',
        CALLSYNC_EGRESS_SEND_STORAGE: 'false',
      });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const { problems, message } = error as ConfigError;
    expect([...problems].sort()).toEqual([
      'CALLSYNC_PORT must be a port number (0 to 65535)',
      'CALLSYNC_S3_BUCKET is required when CALLSYNC_EGRESS_STORAGE is s3',
      'CALLSYNC_STORE sqlite: needs a path, e.g. sqlite:./data/callsync.db',
      'CRM_BASE_URL is required',
      'LIVEKIT_API_KEY is required',
      'LIVEKIT_URL is required',
    ]);
    const lines = message.split('\n');
    expect(lines[0]).toBe('invalid configuration (6 problems):');
    expect(
      lines
        .slice(1)
        .map((line) => line.trim())
        .sort(),
    ).toEqual([...problems].sort());
    expect(message).not.toContain('super-secret-value');
  });
});

describe('loadConfig: where recordings are stored', () => {
  const s3 = {
    ...required,
    CALLSYNC_EGRESS_STORAGE: 's3',
    CALLSYNC_S3_BUCKET: 'call-recordings',
    CALLSYNC_S3_ACCESS_KEY_ID: 'AKIAEXAMPLE',
    CALLSYNC_S3_SECRET_ACCESS_KEY: 's3-secret-never-printed',
  };
  const invalid = (env: Record<string, string>) => {
    try {
      loadConfig(env);
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return (error as Error).message;
    }
    throw new Error('expected a ConfigError');
  };

  it('defaults to the shared volume, with the egress request carrying storage when there is one', () => {
    expect(loadConfig(required).egressStorage).toEqual({
      storage: { kind: 'local', recordingsDir: './recordings' },
      sendToEgress: true,
    });
  });

  it('reads S3 with the contract defaults: region us-east-1, virtual-hosted style', () => {
    expect(loadConfig(s3).egressStorage).toEqual({
      storage: {
        kind: 's3',
        bucket: 'call-recordings',
        region: 'us-east-1',
        endpoint: undefined,
        forcePathStyle: false,
        accessKeyId: 'AKIAEXAMPLE',
        secretAccessKey: 's3-secret-never-printed',
        sessionToken: undefined,
      },
      sendToEgress: true,
    });
  });

  it('reads an S3-compatible store (R2, MinIO) and a read-only set-up without keys', () => {
    const config = loadConfig({
      ...s3,
      CALLSYNC_S3_ENDPOINT: 'https://account.r2.cloudflarestorage.com/',
      CALLSYNC_S3_REGION: 'auto',
      CALLSYNC_S3_FORCE_PATH_STYLE: 'true',
      CALLSYNC_S3_SESSION_TOKEN: 'session',
    });
    expect(config.egressStorage.storage).toMatchObject({
      endpoint: 'https://account.r2.cloudflarestorage.com',
      region: 'auto',
      forcePathStyle: true,
      sessionToken: 'session',
    });
    const readOnly = loadConfig({
      ...required,
      CALLSYNC_EGRESS_STORAGE: 's3',
      CALLSYNC_S3_BUCKET: 'b',
      CALLSYNC_EGRESS_SEND_STORAGE: 'false',
    });
    expect(readOnly.egressStorage).toMatchObject({
      sendToEgress: false,
      storage: { accessKeyId: undefined },
    });
  });

  it.each([
    [{ CALLSYNC_EGRESS_STORAGE: 'dropbox' }, 'CALLSYNC_EGRESS_STORAGE must be local, s3, gcs or azure'],
    [{ CALLSYNC_EGRESS_STORAGE: 's3' }, 'CALLSYNC_S3_'],
    [{ ...s3, CALLSYNC_S3_BUCKET: '' }, 'CALLSYNC_S3_BUCKET is required when CALLSYNC_EGRESS_STORAGE is s3'],
    [{ ...s3, CALLSYNC_S3_SECRET_ACCESS_KEY: '' }, 'CALLSYNC_S3_SECRET_ACCESS_KEY is required'],
    [{ ...s3, CALLSYNC_S3_ENDPOINT: 'minio:9000' }, 'CALLSYNC_S3_ENDPOINT must be a URL'],
    [{ ...s3, CALLSYNC_S3_FORCE_PATH_STYLE: 'maybe' }, 'CALLSYNC_S3_FORCE_PATH_STYLE must be true or false'],
    [
      { ...s3, CALLSYNC_EGRESS_SEND_STORAGE: 'sometimes' },
      'CALLSYNC_EGRESS_SEND_STORAGE must be true or false',
    ],
    [
      { CALLSYNC_EGRESS_STORAGE: 'gcs', CALLSYNC_GCS_BUCKET: 'b' },
      'CALLSYNC_GCS_CREDENTIALS_FILE is required',
    ],
    [
      {
        CALLSYNC_EGRESS_STORAGE: 'gcs',
        CALLSYNC_GCS_BUCKET: 'b',
        CALLSYNC_GCS_CREDENTIALS_FILE: '/no/such/key.json',
      },
      'CALLSYNC_GCS_CREDENTIALS_FILE /no/such/key.json cannot be read (ENOENT)',
    ],
    [
      {
        CALLSYNC_EGRESS_STORAGE: 'azure',
        CALLSYNC_AZURE_ACCOUNT_NAME: 'acct',
        CALLSYNC_AZURE_CONTAINER: 'c',
      },
      'CALLSYNC_AZURE_ACCOUNT_KEY is required when CALLSYNC_EGRESS_STORAGE is azure',
    ],
  ])('names the variable: %j', (env, expected) => {
    const message = invalid({ ...required, ...env });
    expect(message).toContain(expected);
    expect(message).not.toContain('s3-secret-never-printed');
    // One line, or a header and one line per problem, each naming its variable.
    const [first, ...rest] = message.split('\n');
    if (rest.length > 0) expect(first).toBe(`invalid configuration (${rest.length} problems):`);
    for (const line of rest) expect(line).toMatch(/^ {2}CALLSYNC_[A-Z0-9_]+ /);
  });

  it('reads the GCS key file and never echoes a bad one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'callsync-config-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const key = JSON.stringify({
      type: 'service_account',
      client_email: 'callsync@project.iam.gserviceaccount.com',
      private_key: '-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n',
    });
    await writeFile(join(dir, 'key.json'), key);
    await writeFile(join(dir, 'broken.json'), '{"private_key": "-----BEGIN PRIVATE KEY----- leaked?');
    const gcs = { ...required, CALLSYNC_EGRESS_STORAGE: 'gcs', CALLSYNC_GCS_BUCKET: 'rec' };
    expect(
      loadConfig({ ...gcs, CALLSYNC_GCS_CREDENTIALS_FILE: join(dir, 'key.json') }).egressStorage.storage,
    ).toEqual({
      kind: 'gcs',
      bucket: 'rec',
      credentialsJson: key,
      endpoint: undefined,
    });
    const message = invalid({ ...gcs, CALLSYNC_GCS_CREDENTIALS_FILE: join(dir, 'broken.json') });
    expect(message).toContain('is not JSON');
    expect(message).not.toContain('PRIVATE KEY');
  });

  it('gives Azure its public endpoint unless told otherwise (an emulator)', () => {
    const azure = {
      ...required,
      CALLSYNC_EGRESS_STORAGE: 'azure',
      CALLSYNC_AZURE_ACCOUNT_NAME: 'acct',
      CALLSYNC_AZURE_ACCOUNT_KEY: 'a2V5',
      CALLSYNC_AZURE_CONTAINER: 'recordings',
    };
    expect(loadConfig(azure).egressStorage.storage).toMatchObject({
      blobEndpoint: 'https://acct.blob.core.windows.net',
    });
    expect(
      loadConfig({ ...azure, CALLSYNC_AZURE_BLOB_ENDPOINT: 'http://127.0.0.1:10000/devstoreaccount1' })
        .egressStorage.storage,
    ).toMatchObject({ blobEndpoint: 'http://127.0.0.1:10000/devstoreaccount1' });
  });
});
