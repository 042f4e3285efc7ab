/**
 * Recordings on a volume shared with the egress (`CALLSYNC_EGRESS_STORAGE=local`), read strictly
 * inside `CALLSYNC_RECORDINGS_DIR`.
 *
 * Path policy: the egress's `location` is an absolute path on its host (or a storage URL) and
 * its `filename` the templated filepath. A relative path is taken relative to the root; an
 * absolute one must lie inside it. Anything that leaves the root is refused: `..` segments, an
 * absolute path elsewhere, or a symlink whose target is outside (checked on the real path).
 *
 * Open-once policy: the real path is checked, then opened with `O_NOFOLLOW`, and the opened
 * descriptor must be the very file that was checked (same device and inode); size, duration
 * and the bytes sent all come from that one descriptor. A file swapped for a link or another
 * file between the check and the open is refused (`RECORDING_CHANGED`), so nothing outside the
 * root can reach the CRM.
 *
 * A missing file is retryable (a shared volume may show it a moment after the egress reports
 * it); a missing root is a start-up error (`check()`), not something to retry for days.
 */
import { constants } from 'node:fs';
import { access, lstat, open, realpath, stat, type FileHandle } from 'node:fs/promises';
import { basename, isAbsolute, relative, resolve, sep } from 'node:path';
import { readOggOpusInfoFrom } from '../../audio/ogg-opus.ts';
import { OggFormatError } from '../../audio/ogg-page.ts';
import {
  RECORDING_ERROR_CODES,
  RecordingError,
  closerOf,
  type OpenedRecording,
  type RecordingStorage,
  type ReportedFile,
} from './recording-storage.ts';
import { describeStorage, type LocalStorageSettings } from './storage-settings.ts';

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

const outside = (message: string) =>
  new RecordingError(RECORDING_ERROR_CODES.OUTSIDE_ROOT, message, { retryable: false });

export class LocalRecordingStorage implements RecordingStorage {
  readonly kind = 'local' as const;
  readonly description: string;
  readonly egressUpload = undefined;
  readonly #root: string;
  #realRoot: Promise<string> | undefined;

  constructor(settings: Omit<LocalStorageSettings, 'kind'>) {
    this.#root = resolve(settings.recordingsDir);
    this.description = describeStorage({ kind: 'local', recordingsDir: this.#root });
  }

  get rootDir(): string {
    return this.#root;
  }

  async check(): Promise<void> {
    try {
      if (!(await stat(this.#root)).isDirectory()) throw new Error('not a directory');
      await access(this.#root, constants.R_OK | constants.X_OK);
    } catch (error) {
      throw new RecordingError(
        RECORDING_ERROR_CODES.DIR_MISSING,
        `CALLSYNC_RECORDINGS_DIR ${this.#root} is not a readable directory (${(error as NodeJS.ErrnoException).code ?? String(error)})`,
        { retryable: false, cause: error },
      );
    }
  }

  async open(file: ReportedFile): Promise<OpenedRecording> {
    const candidate = this.#candidatePath(file);
    const realRoot = await this.#resolveRoot();
    // An absolute location may name the root by its real path (the root itself may be a link).
    if (!isInside(this.#root, candidate) && !isInside(realRoot, candidate)) {
      throw outside(`recording path ${candidate} is outside the recordings directory ${this.#root}`);
    }
    const realFile = await this.#realPathOf(candidate);
    if (!isInside(realRoot, realFile)) {
      throw outside(
        `recording ${candidate} resolves to ${realFile}, outside the recordings directory ${this.#root}`,
      );
    }
    let checked;
    try {
      checked = await lstat(realFile);
    } catch (error) {
      throw this.#openError(realFile, error);
    }
    if (checked.isSymbolicLink()) {
      // realpath said it was no link a moment ago: swapped meanwhile.
      throw new RecordingError(
        RECORDING_ERROR_CODES.CHANGED,
        `recording ${realFile} became a link: refused`,
        {
          retryable: false,
        },
      );
    }
    if (!checked.isFile()) {
      throw new RecordingError(
        RECORDING_ERROR_CODES.NOT_A_FILE,
        `recording ${candidate} is not a regular file`,
        {
          retryable: false,
        },
      );
    }

    const handle = await this.#openChecked(realFile, checked);
    try {
      const { size } = await handle.stat();
      let durationSeconds: number;
      try {
        ({ durationSeconds } = await readOggOpusInfoFrom(handle));
      } catch (error) {
        if (!(error instanceof OggFormatError)) throw error;
        throw new RecordingError(
          RECORDING_ERROR_CODES.INVALID,
          `recording ${candidate} is not a valid Ogg Opus file: ${error.message}`,
          { retryable: false, cause: error },
        );
      }
      const body = handle.createReadStream({ start: 0, end: Math.max(0, size - 1), autoClose: true });
      return {
        fileName: basename(realFile),
        sizeBytes: size,
        durationSeconds,
        source: realFile,
        body,
        close: closerOf(body),
      };
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw error;
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Opens the checked path without following a link and proves it is the same file. */
  async #openChecked(realFile: string, checked: { dev: number; ino: number }): Promise<FileHandle> {
    let handle: FileHandle;
    try {
      handle = await open(realFile, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ELOOP') {
        throw new RecordingError(
          RECORDING_ERROR_CODES.CHANGED,
          `recording ${realFile} became a link: refused`,
          {
            retryable: false,
            cause: error,
          },
        );
      }
      throw this.#openError(realFile, error);
    }
    const opened = await handle.stat();
    if (!opened.isFile() || opened.dev !== checked.dev || opened.ino !== checked.ino) {
      await handle.close();
      throw new RecordingError(
        RECORDING_ERROR_CODES.CHANGED,
        `recording ${realFile} was replaced between the check and the open: refused`,
        { retryable: false },
      );
    }
    return handle;
  }

  async #realPathOf(candidate: string): Promise<string> {
    try {
      return await realpath(candidate);
    } catch (error) {
      throw this.#openError(candidate, error);
    }
  }

  #openError(path: string, error: unknown): RecordingError {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      return new RecordingError(RECORDING_ERROR_CODES.NOT_FOUND, `recording ${path} does not exist (yet)`, {
        retryable: true,
        cause: error,
      });
    }
    return new RecordingError(
      RECORDING_ERROR_CODES.UNAVAILABLE,
      `recording ${path} cannot be read: ${String(error)}`,
      {
        retryable: true,
        cause: error,
      },
    );
  }

  #candidatePath(file: ReportedFile): string {
    // Prefer the location (where the file finally landed); a storage URL says nothing about
    // our volume, so fall back to the templated filename then.
    const reported = file.location && !isUrl(file.location) ? file.location : file.filename;
    if (!reported) {
      throw new RecordingError(
        RECORDING_ERROR_CODES.NO_PATH,
        'the egress reported no file location or name',
        {
          retryable: false,
        },
      );
    }
    if (hasParentSegment(reported)) throw outside(`recording path ${reported} contains "..": refused`);
    return resolve(this.#root, reported);
  }

  #resolveRoot(): Promise<string> {
    this.#realRoot ??= realpath(this.#root).catch((error: unknown) => {
      this.#realRoot = undefined;
      throw new RecordingError(
        RECORDING_ERROR_CODES.DIR_MISSING,
        `recordings directory ${this.#root} is not readable (unmounted?)`,
        { retryable: true, cause: error },
      );
    });
    return this.#realRoot;
  }
}
