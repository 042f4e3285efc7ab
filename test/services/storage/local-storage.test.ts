import { readFile, mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeOggOpusRecording } from '../../../src/audio/ogg-opus.ts';
import {
  LocalRecordingStorage,
  type ReportedFile,
  type OpenedRecording,
} from '../../../src/services/storage/index.ts';

let sandbox: string;
let root: string;
let outside: string;
let storage: LocalRecordingStorage;
const ACCEPTABLE_REFUSALS = new Set(['RECORDING_OUTSIDE_ROOT', 'RECORDING_CHANGED', 'RECORDING_NOT_FOUND']);
const opened: OpenedRecording[] = [];

const egressFile = (overrides: Partial<ReportedFile>): ReportedFile => ({
  filename: '',
  location: '',
  ...overrides,
});

/** Opens through the storage and keeps the handle for clean-up. */
const resolver = {
  async resolve(file: ReportedFile) {
    const recording = await storage.open(file);
    opened.push(recording);
    return recording;
  },
};

async function bytesOf(recording: OpenedRecording): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of recording.body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

beforeEach(async () => {
  sandbox = await mkdtemp(join(tmpdir(), 'callsync-recordings-'));
  root = join(sandbox, 'recordings');
  outside = join(sandbox, 'elsewhere');
  await mkdir(root);
  await mkdir(outside);
  storage = new LocalRecordingStorage({ recordingsDir: root });
});
afterEach(async () => {
  await Promise.all(opened.splice(0).map((recording) => recording.close()));
  await rm(sandbox, { recursive: true, force: true });
});

describe('LocalRecordingStorage', () => {
  it('opens a relative filename inside the root, with size and duration read from the file and its exact bytes', async () => {
    const path = join(root, 'calls', 'room-1.ogg');
    const written = await writeOggOpusRecording(path, { durationSeconds: 7.3 });
    const recording = await resolver.resolve(egressFile({ filename: 'calls/room-1.ogg' }));
    expect(recording.fileName).toBe('room-1.ogg');
    expect(recording.sizeBytes).toBe(written.sizeBytes);
    expect(recording.durationSeconds).toBeCloseTo(7.3, 6);
    expect((await bytesOf(recording)).equals(await readFile(path))).toBe(true);
  });

  it('prefers an absolute location inside the root over the filename', async () => {
    await writeOggOpusRecording(join(root, 'final.ogg'), { durationSeconds: 2 });
    const recording = await resolver.resolve(
      egressFile({ filename: 'template-{time}.ogg', location: join(root, 'final.ogg') }),
    );
    expect(recording.fileName).toBe('final.ogg');
  });

  it('falls back to the filename when the location is a storage URL', async () => {
    await writeOggOpusRecording(join(root, 'synced.ogg'), { durationSeconds: 1 });
    const recording = await resolver.resolve(
      egressFile({ filename: 'synced.ogg', location: 'https://bucket.s3.amazonaws.com/synced.ogg' }),
    );
    expect(recording.fileName).toBe('synced.ogg');
  });

  it.each([
    ['a path with ..', () => egressFile({ filename: 'calls/../../elsewhere/secret.ogg' })],
    ['an absolute path elsewhere', () => egressFile({ location: join(outside, 'secret.ogg') })],
    ['/etc/passwd', () => egressFile({ location: '/etc/passwd' })],
  ])('refuses %s, before touching the file', async (_name, file) => {
    await writeOggOpusRecording(join(outside, 'secret.ogg'), { durationSeconds: 1 });
    await expect(resolver.resolve(file())).rejects.toMatchObject({
      code: 'RECORDING_OUTSIDE_ROOT',
      retryable: false,
    });
  });

  it('refuses a symlink inside the root that leads out of it', async () => {
    await writeOggOpusRecording(join(outside, 'secret.ogg'), { durationSeconds: 1 });
    await symlink(join(outside, 'secret.ogg'), join(root, 'innocent.ogg'));
    await expect(resolver.resolve(egressFile({ filename: 'innocent.ogg' }))).rejects.toMatchObject({
      code: 'RECORDING_OUTSIDE_ROOT',
    });
    await symlink(outside, join(root, 'linked-dir'));
    await expect(resolver.resolve(egressFile({ filename: 'linked-dir/secret.ogg' }))).rejects.toMatchObject({
      code: 'RECORDING_OUTSIDE_ROOT',
    });
  });

  it('follows a symlink that stays inside the root and reports the real path', async () => {
    await writeOggOpusRecording(join(root, 'real.ogg'), { durationSeconds: 1 });
    await symlink(join(root, 'real.ogg'), join(root, 'alias.ogg'));
    const recording = await resolver.resolve(egressFile({ filename: 'alias.ogg' }));
    expect(recording.fileName).toBe('real.ogg');
  });

  it('never sends a file from outside the root when the recording is swapped for a link while opening', async () => {
    const inside = join(root, 'swapped.ogg');
    await writeOggOpusRecording(inside, { durationSeconds: 1 });
    const insideBytes = await readFile(inside);
    await writeOggOpusRecording(join(outside, 'secret.ogg'), { durationSeconds: 2 });
    const parked = join(root, 'parked.ogg');
    const link = join(root, 'link.ogg');
    await symlink(join(outside, 'secret.ogg'), link);

    // Swap the recording and the link back and forth while opening it again and again.
    let swapping = true;
    const swapper = (async () => {
      for (let round = 0; swapping && round < 20_000; round += 1) {
        await rename(inside, parked);
        await rename(link, inside);
        await rename(inside, link);
        await rename(parked, inside);
      }
    })();
    const refusals = new Map<string, number>();
    let delivered = 0;
    for (let attempt = 0; attempt < 300; attempt += 1) {
      try {
        const recording = await storage.open(egressFile({ filename: 'swapped.ogg' }));
        const bytes = await bytesOf(recording);
        await recording.close();
        // Whatever was opened is the recording itself, never the outside file.
        expect(bytes.equals(insideBytes)).toBe(true);
        delivered += 1;
      } catch (error) {
        const code = (error as { code?: string }).code ?? String(error);
        refusals.set(code, (refusals.get(code) ?? 0) + 1);
      }
    }
    swapping = false;
    await swapper;
    // A swap mid-open is refused for what it is; a moment without the file reads as not there yet.
    expect([...refusals.keys()].filter((code) => !ACCEPTABLE_REFUSALS.has(code))).toEqual([]);
    expect(delivered + [...refusals.values()].reduce((a, b) => a + b, 0)).toBe(300);
  });

  it('destroys an unread body on close, and close is safe twice', async () => {
    await writeOggOpusRecording(join(root, 'unread.ogg'), { durationSeconds: 1 });
    const recording = await storage.open(egressFile({ filename: 'unread.ogg' }));
    await recording.close();
    await recording.close();
    expect(recording.body.destroyed).toBe(true);
  });

  it('checks the root at start-up: a missing directory is a clear, non-retryable error', async () => {
    await expect(storage.check()).resolves.toBeUndefined();
    const missing = new LocalRecordingStorage({ recordingsDir: join(sandbox, 'not-mounted') });
    await expect(missing.check()).rejects.toMatchObject({
      code: 'RECORDINGS_DIR_MISSING',
      retryable: false,
      message: expect.stringContaining('CALLSYNC_RECORDINGS_DIR') as string,
    });
  });

  it('carries no upload settings for the egress: the volume is shared', () => {
    expect(storage.egressUpload).toBeUndefined();
    expect(storage.kind).toBe('local');
  });

  it('says a missing file may appear later (retryable), a bad one will not', async () => {
    await expect(resolver.resolve(egressFile({ filename: 'not-yet.ogg' }))).rejects.toMatchObject({
      code: 'RECORDING_NOT_FOUND',
      retryable: true,
    });
    await writeFile(join(root, 'garbage.ogg'), 'definitely not audio');
    await expect(resolver.resolve(egressFile({ filename: 'garbage.ogg' }))).rejects.toMatchObject({
      code: 'RECORDING_INVALID',
      retryable: false,
    });
    await mkdir(join(root, 'a-dir.ogg'));
    await expect(resolver.resolve(egressFile({ filename: 'a-dir.ogg' }))).rejects.toMatchObject({
      code: 'RECORDING_NOT_A_FILE',
    });
    await expect(resolver.resolve(egressFile({}))).rejects.toMatchObject({ code: 'RECORDING_NO_PATH' });
  });

  it('reports a directory gone after start-up (unmounted) as retryable', async () => {
    const missing = new LocalRecordingStorage({ recordingsDir: join(sandbox, 'not-mounted') });
    await expect(missing.open(egressFile({ filename: 'x.ogg' }))).rejects.toMatchObject({
      code: 'RECORDINGS_DIR_MISSING',
      retryable: true,
    });
  });
});
