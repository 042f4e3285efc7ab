import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeOggOpusRecording } from '../../src/audio/ogg-opus.ts';
import type { EgressFile } from '../../src/services/egress.client.ts';
import { RecordingResolver } from '../../src/services/recordings.ts';

let sandbox: string;
let root: string;
let outside: string;
let resolver: RecordingResolver;

const egressFile = (overrides: Partial<EgressFile>): EgressFile => ({
  filename: '',
  location: '',
  sizeBytes: 1,
  durationSeconds: 999, // the egress's wall-clock figure: must never be trusted
  ...overrides,
});

beforeEach(async () => {
  sandbox = await mkdtemp(join(tmpdir(), 'callsync-recordings-'));
  root = join(sandbox, 'recordings');
  outside = join(sandbox, 'elsewhere');
  await mkdir(root);
  await mkdir(outside);
  resolver = new RecordingResolver({ rootDir: root });
});
afterEach(async () => {
  await rm(sandbox, { recursive: true, force: true });
});

describe('RecordingResolver', () => {
  it('resolves a relative filename inside the root, with size and duration read from the file', async () => {
    const written = await writeOggOpusRecording(join(root, 'calls', 'room-1.ogg'), { durationSeconds: 7.3 });
    const recording = await resolver.resolve(egressFile({ filename: 'calls/room-1.ogg' }));
    expect(recording.fileName).toBe('room-1.ogg');
    expect(recording.sizeBytes).toBe(written.sizeBytes);
    expect(recording.durationSeconds).toBeCloseTo(7.3, 6);
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

  it('reports a missing recordings directory as retryable', async () => {
    const missing = new RecordingResolver({ rootDir: join(sandbox, 'not-mounted') });
    await expect(missing.resolve(egressFile({ filename: 'x.ogg' }))).rejects.toMatchObject({
      code: 'RECORDINGS_DIR_MISSING',
      retryable: true,
    });
  });
});
