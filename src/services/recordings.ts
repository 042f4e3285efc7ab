/**
 * Maps the file an egress reported to a readable recording strictly inside the configured
 * recordings root (`CALLSYNC_RECORDINGS_DIR`), and reads its facts from the file itself.
 *
 * Path policy: the egress writes to a volume callsync shares (the egress's local storage, or a
 * synced bucket mounted here). Its `location` is an absolute path on the egress host, or a
 * storage URL; its `filename` is the templated filepath. A relative path is taken relative to
 * the root; an absolute one must lie inside it. Anything that leaves the root is refused: a
 * path with `..` segments, an absolute path elsewhere, or a symlink whose target is outside
 * (checked on the resolved real path, which is also the path returned for reading).
 *
 * Facts policy: size comes from `stat`, duration from the Ogg stream (last granule position at
 * 48 kHz), not from the egress's wall-clock figures.
 *
 * A missing file is retryable (a shared volume may show it a moment after the egress reports
 * it); a file outside the root, not a regular file or not Ogg Opus is not.
 */
import { realpath, stat } from 'node:fs/promises';
import { basename, isAbsolute, relative, resolve, sep } from 'node:path';
import { OggFormatError } from '../audio/ogg-page.ts';
import { readOggOpusInfo } from '../audio/ogg-opus.ts';
import { CallsyncError } from '../errors.ts';
import type { EgressFile } from './egress.client.ts';

export class RecordingError extends CallsyncError {}

export interface LocalRecording {
  /** Real path of the file, inside the root. */
  path: string;
  /** The name the CRM gets (the file's base name). */
  fileName: string;
  sizeBytes: number;
  durationSeconds: number;
}

function isInside(root: string, candidate: string): boolean {
  const rel = relative(root, candidate);
  return rel !== '' && !rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel);
}

function hasParentSegment(path: string): boolean {
  return path.split(/[\\/]+/).includes('..');
}

function isUrl(value: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(value);
}

export class RecordingResolver {
  readonly #root: string;
  #realRoot: Promise<string> | undefined;

  constructor(options: { rootDir: string }) {
    this.#root = resolve(options.rootDir);
  }

  get rootDir(): string {
    return this.#root;
  }

  /** Resolves an egress file to a local recording, or throws a `RecordingError` saying why not. */
  async resolve(file: EgressFile): Promise<LocalRecording> {
    const candidate = this.#candidatePath(file);
    const realRoot = await this.#resolveRoot();
    // An absolute location may name the root by its real path (the root itself may be a link).
    if (!isInside(this.#root, candidate) && !isInside(realRoot, candidate)) {
      throw new RecordingError(
        'RECORDING_OUTSIDE_ROOT',
        `recording path ${candidate} is outside the recordings directory ${this.#root}`,
        { retryable: false },
      );
    }

    let realFile: string;
    try {
      realFile = await realpath(candidate);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new RecordingError('RECORDING_NOT_FOUND', `recording ${candidate} does not exist (yet)`, {
          retryable: true,
          cause: error,
        });
      }
      throw new RecordingError(
        'RECORDING_UNREADABLE',
        `recording ${candidate} cannot be read: ${String(error)}`,
        {
          retryable: true,
          cause: error,
        },
      );
    }
    if (!isInside(realRoot, realFile)) {
      throw new RecordingError(
        'RECORDING_OUTSIDE_ROOT',
        `recording ${candidate} resolves to ${realFile}, outside the recordings directory ${this.#root}`,
        { retryable: false },
      );
    }
    const stats = await stat(realFile);
    if (!stats.isFile()) {
      throw new RecordingError('RECORDING_NOT_A_FILE', `recording ${candidate} is not a regular file`, {
        retryable: false,
      });
    }
    let durationSeconds: number;
    try {
      ({ durationSeconds } = await readOggOpusInfo(realFile));
    } catch (error) {
      if (error instanceof OggFormatError) {
        throw new RecordingError(
          'RECORDING_INVALID',
          `recording ${candidate} is not a valid Ogg Opus file: ${error.message}`,
          {
            retryable: false,
            cause: error,
          },
        );
      }
      throw error;
    }
    return { path: realFile, fileName: basename(realFile), sizeBytes: stats.size, durationSeconds };
  }

  #candidatePath(file: EgressFile): string {
    // Prefer the location (where the file finally landed); a storage URL says nothing about
    // our volume, so fall back to the templated filename then.
    const reported = file.location && !isUrl(file.location) ? file.location : file.filename;
    if (!reported) {
      throw new RecordingError('RECORDING_NO_PATH', 'the egress reported no file location or name', {
        retryable: false,
      });
    }
    if (hasParentSegment(reported)) {
      throw new RecordingError(
        'RECORDING_OUTSIDE_ROOT',
        `recording path ${reported} contains "..": refused`,
        {
          retryable: false,
        },
      );
    }
    return resolve(this.#root, reported);
  }

  #resolveRoot(): Promise<string> {
    this.#realRoot ??= realpath(this.#root).catch((error: unknown) => {
      this.#realRoot = undefined; // the directory may be mounted later: try again next time
      throw new RecordingError(
        'RECORDINGS_DIR_MISSING',
        `recordings directory ${this.#root} is not readable`,
        {
          retryable: true,
          cause: error,
        },
      );
    });
    return this.#realRoot;
  }
}
