import { mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  OPUS_SAMPLE_RATE_HZ,
  SPEECH_FIXTURE_5S,
  SPEECH_FIXTURE_60S,
  opusPacketSamples,
  readOggOpusInfo,
  writeOggOpusRecording,
} from '../../src/audio/ogg-opus.ts';
import {
  OGG_FLAG_BEGIN_OF_STREAM,
  OGG_FLAG_END_OF_STREAM,
  OggFormatError,
  packetsOf,
  parseOggPages,
} from '../../src/audio/ogg-page.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'callsync-ogg-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('readOggOpusInfo', () => {
  it('reads the shipped fixtures (made by opusenc) to their encoded length', async () => {
    const five = await readOggOpusInfo(SPEECH_FIXTURE_5S);
    expect(five.durationSeconds).toBeCloseTo(5, 3);
    expect(five.complete).toBe(true);
    expect(five.channels).toBe(1);
    expect(five.sizeBytes).toBe((await stat(SPEECH_FIXTURE_5S)).size);
    expect((await readOggOpusInfo(SPEECH_FIXTURE_60S)).durationSeconds).toBeCloseTo(60, 2);
  });

  it('refuses a file that is not Ogg Opus, naming the problem', async () => {
    const path = join(dir, 'not-audio.ogg');
    await writeFile(path, 'RIFF....WAVEfmt this is not an ogg stream at all');
    await expect(readOggOpusInfo(path)).rejects.toThrow(OggFormatError);
    await expect(readOggOpusInfo(path)).rejects.toThrow(/no Ogg page/);
  });

  it('refuses a page whose CRC does not match', async () => {
    const path = join(dir, 'corrupt.ogg');
    const bytes = await readFile(SPEECH_FIXTURE_5S);
    bytes[30] = bytes[30]! ^ 0xff; // inside the OpusHead page
    await writeFile(path, bytes);
    await expect(readOggOpusInfo(path)).rejects.toThrow(/bad CRC/);
  });

  it('reports a truncated recording as incomplete, with the audio it does hold', async () => {
    const path = join(dir, 'cut.ogg');
    await writeOggOpusRecording(path, { durationSeconds: 30 });
    const { size } = await stat(path);
    await truncate(path, Math.floor(size / 2));
    const info = await readOggOpusInfo(path);
    expect(info.complete).toBe(false);
    expect(info.durationSeconds).toBeGreaterThan(10);
    expect(info.durationSeconds).toBeLessThan(20);
  });
});

describe('writeOggOpusRecording', () => {
  it.each([0.02, 5, 7.3, 61.5, 300])('writes a valid %s s Ogg Opus stream', async (durationSeconds) => {
    const path = join(dir, 'nested', `rec-${durationSeconds}.ogg`);
    const written = await writeOggOpusRecording(path, { durationSeconds });
    const bytes = await readFile(path);
    expect(written.sizeBytes).toBe(bytes.length);

    // Every page parses with a valid CRC, in sequence, one logical stream, BOS first, EOS last.
    const pages = parseOggPages(bytes);
    expect(pages.map((page) => page.sequence)).toEqual(pages.map((_, index) => index));
    expect(new Set(pages.map((page) => page.serial)).size).toBe(1);
    expect(pages[0]!.flags & OGG_FLAG_BEGIN_OF_STREAM).toBeTruthy();
    expect(pages.at(-1)!.flags & OGG_FLAG_END_OF_STREAM).toBeTruthy();
    const granules = pages.map((page) => page.granulePosition);
    expect([...granules].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))).toEqual(granules);

    const [head, tags, ...audio] = [...packetsOf(pages)];
    expect(head!.toString('latin1', 0, 8)).toBe('OpusHead');
    expect(tags!.toString('latin1', 0, 8)).toBe('OpusTags');
    const preSkip = head!.readUInt16LE(10);
    const decodedSamples = audio.reduce((sum, packet) => sum + opusPacketSamples(packet), 0);
    const wantedSamples = Math.round(durationSeconds * OPUS_SAMPLE_RATE_HZ);
    // Enough audio is muxed to cover the length, and the final granule trims the rest.
    expect(decodedSamples).toBeGreaterThanOrEqual(preSkip + wantedSamples);
    expect(Number(pages.at(-1)!.granulePosition)).toBe(preSkip + wantedSamples);

    const info = await readOggOpusInfo(path);
    expect(info.durationSeconds).toBeCloseTo(durationSeconds, 6);
    expect(info.complete).toBe(true);
  });

  it('never leaves a partial file under the final name', async () => {
    const path = join(dir, 'bad.ogg');
    await expect(writeOggOpusRecording(path, { durationSeconds: -1 })).rejects.toThrow(/durationSeconds/);
    await expect(stat(path)).rejects.toThrow(/ENOENT/);
  });
});
