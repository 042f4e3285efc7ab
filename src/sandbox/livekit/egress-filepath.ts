/**
 * Where an egress file lands, following livekit/egress `getFileConfig`/`updateFilepath`.
 *
 * The requested `filepath` is cleaned, its `{room_name}`, `{room_id}`, `{time}` and `{utc}`
 * placeholders are filled in, an empty path or a directory (trailing `/`) gets the default
 * name `<room_name>-<time>.ogg`, and the `.ogg` extension is forced (a known wrong extension
 * is replaced). That string is what `file_results[].filename` reports.
 *
 * The emulator's recordings directory stands for the egress host's filesystem, so relative
 * and absolute paths both resolve inside it. Unlike the real egress, which silently strips
 * leading `../`, a path that climbs out is refused: it is a mistake worth surfacing, and the
 * emulator must never write outside its directory.
 */
import { posix, relative, resolve, isAbsolute, sep } from 'node:path';
import { TwirpErrors } from './twirp.ts';

const OGG_EXTENSION = '.ogg';
/** livekit/egress `types.FileExtensions`: extensions replaced rather than appended to. */
const KNOWN_FILE_EXTENSIONS = new Set([
  '.mp4',
  '.ogg',
  '.webm',
  '.m3u8',
  '.ts',
  '.mp3',
  '.txt',
  '.jpeg',
  '.ivf',
  '.h264',
]);

function pad(value: number, width = 2): string {
  return String(value).padStart(width, '0');
}

/** Go layout `2006-01-02T150405`, in UTC (egress containers run in UTC). */
export function formatEgressTime(epochMs: number): string {
  const d = new Date(epochMs);
  return (
    `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}` +
    `T${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}`
  );
}

/** Go layout `20060102150405` followed by three digits of milliseconds. */
export function formatEgressUtc(epochMs: number): string {
  const d = new Date(epochMs);
  return (
    `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}` +
    `${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}${pad(d.getUTCMilliseconds(), 3)}`
  );
}

function climbsOut(path: string): boolean {
  const normalized = posix.normalize(path.replace(/^\/+/, ''));
  return normalized === '..' || normalized.startsWith('../');
}

/** livekit/egress `clean`: normalises, drops leading `../`, keeps a trailing slash. */
function cleanFilepath(path: string): string {
  const hasEndingSlash = path.endsWith('/');
  let cleaned = path === '' ? '' : posix.normalize(path);
  if (cleaned.endsWith('/') && cleaned !== '/') cleaned = cleaned.slice(0, -1);
  while (cleaned.startsWith('../')) cleaned = cleaned.slice(3);
  if (cleaned === '' || cleaned === '.' || cleaned === '..') return '';
  return hasEndingSlash && cleaned !== '/' ? `${cleaned}/` : cleaned;
}

export interface EgressFilepathInput {
  /** `EncodedFileOutput.filepath` as requested. */
  filepath: string;
  roomName: string;
  roomId: string;
  /** When the egress started, in epoch milliseconds. */
  nowMs: number;
}

/** The storage filepath reported as `filename`; throws Twirp invalid_argument on `..` escapes. */
export function egressStorageFilepath(input: EgressFilepathInput): string {
  if (climbsOut(input.filepath)) throw TwirpErrors.invalidField('filepath');
  const time = formatEgressTime(input.nowMs);
  const replacements: Record<string, string> = {
    '{room_name}': input.roomName,
    '{room_id}': input.roomId,
    '{time}': time,
    '{utc}': formatEgressUtc(input.nowMs),
  };
  let filepath = cleanFilepath(input.filepath);
  for (const [placeholder, value] of Object.entries(replacements)) {
    filepath = filepath.split(placeholder).join(value);
  }
  if (filepath === '' || filepath.endsWith('/')) {
    return `${filepath}${input.roomName}-${time}${OGG_EXTENSION}`;
  }
  if (filepath.endsWith(OGG_EXTENSION)) return filepath;
  const extensionStart = filepath.lastIndexOf('.');
  if (extensionStart > -1 && KNOWN_FILE_EXTENSIONS.has(filepath.slice(extensionStart))) {
    filepath = filepath.slice(0, extensionStart);
  }
  return `${filepath}${OGG_EXTENSION}`;
}

/** Absolute path of a storage filepath inside the recordings directory; refuses escapes. */
export function resolveRecordingPath(options: { recordingsDir: string; storageFilepath: string }): string {
  const root = resolve(options.recordingsDir);
  const absolute = resolve(root, `.${sep}${options.storageFilepath.replace(/^\/+/, '')}`);
  const inside = relative(root, absolute);
  if (inside === '' || inside.startsWith('..') || isAbsolute(inside)) {
    throw TwirpErrors.invalidField('filepath');
  }
  return absolute;
}
