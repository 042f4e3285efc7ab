import { describe, expect, it } from 'vitest';
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
      http: { host: '127.0.0.1', port: 8080, ingestToken: undefined },
      store: { url: 'sqlite:./data/callsync.db' },
      recordingsDir: './recordings',
      uploadTargetSeconds: 30,
      logLevel: 'info',
      crm: { baseUrl: 'https://crm.example/api/public', apiKey: undefined },
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
      LOG_LEVEL: 'debug',
    });
    expect(config).toMatchObject({
      crm: { apiKey: 'crm-key' },
      http: { host: '0.0.0.0', port: 9000, ingestToken: 'ingest' },
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
