/**
 * Ogg pages (RFC 3533): parsing and serialising the framing layer of an Ogg stream.
 *
 * Kept separate from the Opus specifics so that the reader (duration of a recording) and the
 * writer (the emulator's recordings) share one implementation of the CRC and page layout.
 */

export const OGG_CAPTURE_PATTERN = Buffer.from('OggS', 'latin1');
/** Fixed part of a page header, before the segment table. */
export const OGG_PAGE_HEADER_BYTES = 27;
/** A page holds at most 255 lacing values of at most 255 bytes each. */
export const OGG_MAX_PAGE_BYTES = OGG_PAGE_HEADER_BYTES + 255 + 255 * 255;

export const OGG_FLAG_CONTINUED = 0x01;
export const OGG_FLAG_BEGIN_OF_STREAM = 0x02;
export const OGG_FLAG_END_OF_STREAM = 0x04;

const CRC_TABLE = (() => {
  // Ogg's CRC-32: polynomial 0x04c11db7, initial value 0, no bit reflection, no final xor.
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let r = i << 24;
    for (let bit = 0; bit < 8; bit++) r = r & 0x80000000 ? (r << 1) ^ 0x04c11db7 : r << 1;
    table[i] = r >>> 0;
  }
  return table;
})();

export function oggCrc32(bytes: Uint8Array, crc = 0): number {
  let value = crc;
  for (let i = 0; i < bytes.length; i++) {
    value = ((value << 8) ^ CRC_TABLE[((value >>> 24) ^ bytes[i]!) & 0xff]!) >>> 0;
  }
  return value >>> 0;
}

export interface OggPage {
  flags: number;
  /** Codec-defined position; for Opus, 48 kHz samples including pre-skip. -1 when no packet ends here. */
  granulePosition: bigint;
  serial: number;
  sequence: number;
  /** Lacing values: a packet ends at a value below 255. */
  segments: number[];
  body: Buffer;
  /** Total bytes of the page as stored (header + segment table + body). */
  byteLength: number;
}

export class OggFormatError extends Error {
  override readonly name = 'OggFormatError';
}

/**
 * Parses the page that starts at `offset`, checking its CRC. Returns `undefined` when the
 * buffer ends before the page does (the caller may read more).
 */
export function parseOggPage(buffer: Buffer, offset: number): OggPage | undefined {
  if (buffer.length - offset < OGG_PAGE_HEADER_BYTES) return undefined;
  if (!buffer.subarray(offset, offset + 4).equals(OGG_CAPTURE_PATTERN)) {
    throw new OggFormatError(`no Ogg page at byte ${offset}`);
  }
  if (buffer[offset + 4] !== 0) throw new OggFormatError(`unsupported Ogg version at byte ${offset}`);
  const segmentCount = buffer[offset + 26]!;
  const headerLength = OGG_PAGE_HEADER_BYTES + segmentCount;
  if (buffer.length - offset < headerLength) return undefined;
  const segments = [...buffer.subarray(offset + OGG_PAGE_HEADER_BYTES, offset + headerLength)];
  const bodyLength = segments.reduce((sum, lacing) => sum + lacing, 0);
  const byteLength = headerLength + bodyLength;
  if (buffer.length - offset < byteLength) return undefined;

  const raw = Buffer.from(buffer.subarray(offset, offset + byteLength));
  const storedCrc = raw.readUInt32LE(22);
  raw.writeUInt32LE(0, 22);
  if (oggCrc32(raw) !== storedCrc) throw new OggFormatError(`bad CRC in the Ogg page at byte ${offset}`);

  return {
    flags: buffer[offset + 5]!,
    granulePosition: buffer.readBigInt64LE(offset + 6),
    serial: buffer.readUInt32LE(offset + 14),
    sequence: buffer.readUInt32LE(offset + 18),
    segments,
    body: raw.subarray(headerLength),
    byteLength,
  };
}

/** Serialises one page whose body is the given complete packets (each under 64 KiB). */
export function serializeOggPage(page: {
  flags: number;
  granulePosition: bigint;
  serial: number;
  sequence: number;
  packets: readonly Buffer[];
}): Buffer {
  const segments: number[] = [];
  for (const packet of page.packets) {
    let remaining = packet.length;
    while (remaining >= 255) {
      segments.push(255);
      remaining -= 255;
    }
    segments.push(remaining);
  }
  if (segments.length > 255)
    throw new RangeError(`too many packets for one Ogg page (${segments.length} lacing values)`);
  const header = Buffer.alloc(OGG_PAGE_HEADER_BYTES + segments.length);
  OGG_CAPTURE_PATTERN.copy(header, 0);
  header[4] = 0;
  header[5] = page.flags;
  header.writeBigInt64LE(page.granulePosition, 6);
  header.writeUInt32LE(page.serial, 14);
  header.writeUInt32LE(page.sequence, 18);
  header.writeUInt32LE(0, 22);
  header[26] = segments.length;
  Buffer.from(segments).copy(header, OGG_PAGE_HEADER_BYTES);
  const bytes = Buffer.concat([header, ...page.packets]);
  bytes.writeUInt32LE(oggCrc32(bytes), 22);
  return bytes;
}

/** Splits a sequence of pages of one logical stream into packets. */
export function* packetsOf(pages: Iterable<OggPage>): Generator<Buffer> {
  let pending: Buffer[] = [];
  for (const page of pages) {
    let cursor = 0;
    let start = 0;
    for (const lacing of page.segments) {
      cursor += lacing;
      if (lacing < 255) {
        pending.push(page.body.subarray(start, cursor));
        yield Buffer.concat(pending);
        pending = [];
        start = cursor;
      }
    }
    if (start < cursor) pending.push(page.body.subarray(start, cursor));
  }
}

/** Parses every page of an in-memory Ogg file. */
export function parseOggPages(buffer: Buffer): OggPage[] {
  const pages: OggPage[] = [];
  let offset = 0;
  while (offset < buffer.length) {
    const page = parseOggPage(buffer, offset);
    if (!page) throw new OggFormatError(`truncated Ogg page at byte ${offset}`);
    pages.push(page);
    offset += page.byteLength;
  }
  return pages;
}
