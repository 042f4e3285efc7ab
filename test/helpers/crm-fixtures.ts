/**
 * Test helpers for the CRM sandbox and client: a sandbox on 127.0.0.1:0 in its own temp dir,
 * real Ogg Opus recordings, a valid call-data document, and raw HTTP requests (for what the
 * client would never send).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { request, type Dispatcher } from 'undici';
import { writeOggOpusRecording } from '../../src/audio/ogg-opus.ts';
import type { CallData } from '../../src/payload/call-data.ts';
import type { RecordingBody } from '../../src/services/crm.client.ts';
import { createCrmSandbox, type CrmSandbox, type CrmSandboxOptions } from '../../src/sandbox/crm/index.ts';

export interface SandboxHarness {
  sandbox: CrmSandbox;
  url: string;
  dir: string;
  /** Closes the sandbox and removes its temp dir. */
  cleanup: () => Promise<void>;
}

export async function startSandbox(options: Partial<CrmSandboxOptions> = {}): Promise<SandboxHarness> {
  const dir = await mkdtemp(join(tmpdir(), 'callsync-crm-'));
  const sandbox = createCrmSandbox({ storageDir: join(dir, 'crm'), ...options });
  const { url } = await sandbox.start();
  return {
    sandbox,
    url,
    dir,
    cleanup: async () => {
      await sandbox.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface Recording {
  path: string;
  sizeBytes: number;
  sha256: string;
}

export async function makeRecording(dir: string, name: string, durationSeconds = 5): Promise<Recording> {
  const path = join(dir, name);
  const { sizeBytes } = await writeOggOpusRecording(path, { durationSeconds });
  return { path, sizeBytes, sha256: await sha256File(path) };
}

/** A file as the CRM client takes a recording: a fresh stream with its length and base name. */
export async function recordingBody(path: string, fileName = basename(path)): Promise<RecordingBody> {
  const { size } = await stat(path);
  return { body: createReadStream(path), sizeBytes: size, fileName };
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** A valid call-data document (seed 000's format) for `callId`. */
export function makeCallData(callId: string, overrides: { recordingUrl?: string | null } = {}): CallData {
  const recordingUrl = overrides.recordingUrl === undefined ? null : overrides.recordingUrl;
  return {
    campaignId: 'campaign-1',
    voiceAgentId: 'agent-1',
    client: 'client-1',
    callDetails: {
      callId,
      direction: 'inbound',
      startTime: '2025-10-29T10:00:00.000Z',
      endTime: '2025-10-29T10:05:00.000Z',
      duration: 300,
      status: 'completed',
      callerNumber: '+918655066243',
      recordingUrl,
      recordingDuration: recordingUrl === null ? null : 300,
      recordingSize: recordingUrl === null ? null : 1234,
    },
    caller: { phoneNumber: '+918655066243' },
    transcription: {
      session_id: `session-${callId}`,
      start_time: '2025-10-29T10:00:00.000Z',
      end_time: '2025-10-29T10:05:00.000Z',
      duration_seconds: 300,
      total_items: 1,
      conversation_items: [
        {
          role: 'user',
          content: 'hello',
          timestamp: '2025-10-29T10:01:00.000Z',
          source: 'livekit-session',
          transcript_confidence: null,
        },
      ],
      lead_generated: false,
      metadata: { auto_saved: true },
    },
    lead: {},
  };
}

export interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  json: unknown;
  text: string;
}

/** A plain HTTP request whose answer is read whole (for sandbox tests that bypass the client). */
export async function rawRequest(
  url: string,
  init: {
    method?: Dispatcher.HttpMethod;
    headers?: Record<string, string>;
    body?: string | Buffer | NodeJS.ReadableStream;
  } = {},
): Promise<RawAnswer> {
  const response = await request(url, {
    method: init.method ?? 'GET',
    headers: init.headers,
    body: init.body as string | Buffer | undefined,
  });
  const text = await response.body.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.statusCode, headers: response.headers, json, text };
}

/** A hand-built multipart body with one file part. */
export function multipartBody(
  parts: { name: string; fileName?: string; contentType?: string; data: Buffer | string }[],
  boundary = 'callsync-test-boundary',
): { body: Buffer; contentType: string } {
  const chunks: Buffer[] = [];
  for (const part of parts) {
    const disposition =
      part.fileName === undefined
        ? `form-data; name="${part.name}"`
        : `form-data; name="${part.name}"; filename="${part.fileName}"`;
    const head = [`--${boundary}`, `Content-Disposition: ${disposition}`];
    if (part.contentType !== undefined) head.push(`Content-Type: ${part.contentType}`);
    chunks.push(Buffer.from(`${head.join('\r\n')}\r\n\r\n`), Buffer.from(part.data), Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}
