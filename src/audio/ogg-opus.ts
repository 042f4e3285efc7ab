/**
 * Ogg Opus recordings (RFC 7845): reading a recording's true duration, and writing real
 * recordings of any length for the LiveKit emulator and the benchmarks.
 *
 * Duration policy: the length of a recording is read from the stream itself, the granule
 * position of its last page minus the pre-skip, at Opus's fixed 48 kHz. Neither the egress's
 * reported `duration` nor the file size is trusted: egress timestamps measure wall time, not
 * audio, and a truncated upload would still report the planned length.
 *
 * The writer re-muxes the Opus packets of a shipped speech fixture (espeak-ng through opusenc)
 * into a new logical stream, looping them as often as needed and trimming the end through the
 * final granule position, so every file is a valid, playable Ogg Opus stream with an exact
 * length. It streams to disk, so multi-hour files cost no memory.
 */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { randomInt } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import {
  OGG_FLAG_BEGIN_OF_STREAM,
  OGG_FLAG_END_OF_STREAM,
  OGG_MAX_PAGE_BYTES,
  OggFormatError,
  packetsOf,
  parseOggPage,
  parseOggPages,
  serializeOggPage,
} from './ogg-page.ts';

/** Opus always counts granule positions in 48 kHz samples, whatever the input rate was. */
export const OPUS_SAMPLE_RATE_HZ = 48_000;
/** The speech the emulator records: 60 s of a synthetic sales call (see fixtures/speech.txt). */
export const SPEECH_FIXTURE_60S = fileURLToPath(new URL('./fixtures/speech-60s.ogg', import.meta.url));
export const SPEECH_FIXTURE_5S = fileURLToPath(new URL('./fixtures/speech-5s.ogg', import.meta.url));

/** Audio packets per page: about one second of 20 ms packets, as opusenc does. */
const PACKETS_PER_PAGE = 50;
/** Pages are buffered into writes of about this size, to keep syscalls few. */
const WRITE_CHUNK_BYTES = 256 * 1024;
const OPUS_HEAD_MAGIC = 'OpusHead';
const OPUS_TAGS_MAGIC = 'OpusTags';

export interface OpusHead {
  channels: number;
  preSkip: number;
  inputSampleRateHz: number;
}

export interface OggOpusInfo {
  durationSeconds: number;
  sizeBytes: number;
  channels: number;
  /** True when the last page carries the end-of-stream flag (a finalised recording). */
  complete: boolean;
}

function parseOpusHead(packet: Buffer): OpusHead {
  if (packet.length < 19 || packet.toString('latin1', 0, 8) !== OPUS_HEAD_MAGIC) {
    throw new OggFormatError('the first Ogg packet is not an OpusHead: not an Ogg Opus stream');
  }
  return {
    channels: packet[9]!,
    preSkip: packet.readUInt16LE(10),
    inputSampleRateHz: packet.readUInt32LE(12),
  };
}

/** Samples (at 48 kHz) that one Opus packet decodes to, from its TOC byte (RFC 6716 §3.1). */
export function opusPacketSamples(packet: Buffer): number {
  const toc = packet[0];
  if (toc === undefined) throw new OggFormatError('empty Opus packet');
  const config = toc >> 3;
  let frameSamples: number;
  if (config < 12)
    frameSamples = [480, 960, 1920, 2880][config % 4]!; // SILK: 10, 20, 40, 60 ms
  else if (config < 16)
    frameSamples = [480, 960][config % 2]!; // hybrid: 10, 20 ms
  else frameSamples = [120, 240, 480, 960][config % 4]!; // CELT: 2.5, 5, 10, 20 ms
  const frameCountCode = toc & 0x03;
  let frames: number;
  if (frameCountCode === 0) frames = 1;
  else if (frameCountCode < 3) frames = 2;
  else {
    const countByte = packet[1];
    if (countByte === undefined) throw new OggFormatError('Opus packet with code 3 but no frame count');
    frames = countByte & 0x3f;
  }
  return frameSamples * frames;
}

/** Bytes of a recording's start that hold its first page (the OpusHead). */
export const OGG_HEAD_READ_BYTES = OGG_MAX_PAGE_BYTES;
/**
 * Bytes of a recording's end that hold its last page: a well-formed file's last page starts
 * within the final `OGG_MAX_PAGE_BYTES`; twice that leaves a whole page before a truncated one.
 */
export const OGG_TAIL_READ_BYTES = 2 * OGG_MAX_PAGE_BYTES;

/**
 * A recording's facts from its two ends: `head` = its first `OGG_HEAD_READ_BYTES` (or all of a
 * shorter file), `tail` = its last `OGG_TAIL_READ_BYTES`, `sizeBytes` = its whole length. This
 * is what makes a remote recording cheap to measure: two small ranged reads, whatever its length.
 * Throws `OggFormatError` when the bytes are not a finished Ogg Opus stream.
 */
export function oggOpusInfoFromEnds(head: Buffer, tail: Buffer, sizeBytes: number): OggOpusInfo {
  const firstPage = parseOggPage(head, 0);
  if (!firstPage) throw new OggFormatError('the file is too short to hold an Ogg page');
  const [headPacket] = packetsOf([firstPage]);
  if (!headPacket) throw new OggFormatError('the first Ogg page holds no packet');
  const opusHead = parseOpusHead(headPacket);
  const lastPage = findLastPage(tail, firstPage.serial);
  if (!lastPage)
    throw new OggFormatError('no complete Ogg page with a granule position at the end of the file');
  const samples = Number(lastPage.granulePosition) - opusHead.preSkip;
  return {
    durationSeconds: Math.max(0, samples) / OPUS_SAMPLE_RATE_HZ,
    sizeBytes,
    channels: opusHead.channels,
    complete: (lastPage.flags & OGG_FLAG_END_OF_STREAM) !== 0,
  };
}

/** Reads `length` bytes at `position` of an open file (fewer only at its end). */
async function readAt(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  const { bytesRead } = await handle.read(buffer, 0, length, position);
  return buffer.subarray(0, bytesRead);
}

/**
 * Reads a recording's duration from an open file: its first page and its tail only, so it costs
 * the same for a 5 s and a 5 h recording. The handle stays open (the caller owns it).
 */
export async function readOggOpusInfoFrom(handle: FileHandle): Promise<OggOpusInfo> {
  const { size } = await handle.stat();
  const head = await readAt(handle, 0, Math.min(size, OGG_HEAD_READ_BYTES));
  const tailLength = Math.min(size, OGG_TAIL_READ_BYTES);
  const tail = await readAt(handle, size - tailLength, tailLength);
  return oggOpusInfoFromEnds(head, tail, size);
}

/** `readOggOpusInfoFrom` for a path. */
export async function readOggOpusInfo(path: string): Promise<OggOpusInfo> {
  const handle = await open(path, 'r');
  try {
    return await readOggOpusInfoFrom(handle);
  } finally {
    await handle.close();
  }
}

function findLastPage(tail: Buffer, serial: number) {
  for (let offset = tail.lastIndexOf('OggS'); offset >= 0; offset = tail.lastIndexOf('OggS', offset - 1)) {
    let page;
    try {
      page = parseOggPage(tail, offset);
    } catch {
      page = undefined; // "OggS" inside packet data, or a corrupt page: keep looking backwards
    }
    if (page && page.serial === serial && page.granulePosition >= 0n) return page;
    if (offset === 0) break;
  }
  return undefined;
}

interface OpusSource {
  headPacket: Buffer;
  opusHead: OpusHead;
  audio: { packet: Buffer; samples: number }[];
}

const sourceCache = new Map<string, Promise<OpusSource>>();

function loadSource(path: string): Promise<OpusSource> {
  let source = sourceCache.get(path);
  if (!source) {
    source = readFile(path).then((bytes) => {
      const [headPacket, _tags, ...audioPackets] = [...packetsOf(parseOggPages(bytes))];
      if (!headPacket || audioPackets.length === 0) throw new OggFormatError(`${path} holds no Opus audio`);
      return {
        headPacket,
        opusHead: parseOpusHead(headPacket),
        audio: audioPackets.map((packet) => ({ packet, samples: opusPacketSamples(packet) })),
      };
    });
    sourceCache.set(path, source);
  }
  return source;
}

function opusTagsPacket(vendor: string): Buffer {
  const vendorBytes = Buffer.from(vendor, 'utf8');
  const packet = Buffer.alloc(8 + 4 + vendorBytes.length + 4);
  packet.write(OPUS_TAGS_MAGIC, 0, 'latin1');
  packet.writeUInt32LE(vendorBytes.length, 8);
  vendorBytes.copy(packet, 12);
  packet.writeUInt32LE(0, 12 + vendorBytes.length); // no user comments
  return packet;
}

export interface WriteRecordingOptions {
  durationSeconds: number;
  /** Ogg Opus file whose packets are looped; the 60 s speech fixture by default. */
  sourcePath?: string;
}

/**
 * Writes a real Ogg Opus recording of `durationSeconds` (at least one sample) to `path`,
 * creating parent directories. The file appears under its final name only once complete.
 */
export async function writeOggOpusRecording(
  path: string,
  options: WriteRecordingOptions,
): Promise<{ sizeBytes: number; durationSeconds: number }> {
  if (!Number.isFinite(options.durationSeconds) || options.durationSeconds < 0) {
    throw new RangeError(`durationSeconds must be a finite number >= 0, got ${options.durationSeconds}`);
  }
  const source = await loadSource(options.sourcePath ?? SPEECH_FIXTURE_60S);
  const targetSamples = Math.max(1, Math.round(options.durationSeconds * OPUS_SAMPLE_RATE_HZ));
  const serial = randomInt(1, 2 ** 31);
  const partialPath = `${path}.partial`;
  await mkdir(dirname(path), { recursive: true });
  const out = createWriteStream(partialPath);
  let sizeBytes = 0;
  let chunk: Buffer[] = [];
  let chunkBytes = 0;
  const flush = async () => {
    if (chunkBytes === 0) return;
    const data = Buffer.concat(chunk, chunkBytes);
    chunk = [];
    chunkBytes = 0;
    if (!out.write(data)) await once(out, 'drain');
  };
  const emit = async (page: Buffer) => {
    chunk.push(page);
    chunkBytes += page.length;
    sizeBytes += page.length;
    if (chunkBytes >= WRITE_CHUNK_BYTES) await flush();
  };

  try {
    let sequence = 0;
    await emit(
      serializeOggPage({
        flags: OGG_FLAG_BEGIN_OF_STREAM,
        granulePosition: 0n,
        serial,
        sequence: sequence++,
        packets: [source.headPacket],
      }),
    );
    await emit(
      serializeOggPage({
        flags: 0,
        granulePosition: 0n,
        serial,
        sequence: sequence++,
        packets: [opusTagsPacket('callsync LiveKit emulator')],
      }),
    );
    const endGranule = source.opusHead.preSkip + targetSamples;
    let granule = 0; // samples decoded so far; the first preSkip of them are discarded on playback
    let next = 0;
    while (granule < endGranule) {
      const packets: Buffer[] = [];
      while (packets.length < PACKETS_PER_PAGE && granule < endGranule) {
        const item = source.audio[next]!;
        next = (next + 1) % source.audio.length;
        packets.push(item.packet);
        granule += item.samples;
      }
      const last = granule >= endGranule;
      await emit(
        serializeOggPage({
          flags: last ? OGG_FLAG_END_OF_STREAM : 0,
          // The last page's granule trims the surplus of its final packet (RFC 7845 §4.5).
          granulePosition: BigInt(last ? endGranule : granule),
          serial,
          sequence: sequence++,
          packets,
        }),
      );
    }
    await flush();
    out.end();
    await once(out, 'finish');
    await rename(partialPath, path);
  } catch (error) {
    out.destroy();
    await rm(partialPath, { force: true });
    throw error;
  }
  return { sizeBytes, durationSeconds: targetSamples / OPUS_SAMPLE_RATE_HZ };
}
