/**
 * Which store an egress file goes to, and the `location` egress reports for it, following
 * livekit/egress `pkg/config/storage.go` and livekit/storage as pinned by egress v1.14.
 *
 * Resolution: the request's `EncodedFileOutput.output` (s3 | gcp | azure) wins; else the
 * server's `storage:` block (first of s3, gcp, azure, as egress takes the first non-nil); else
 * the local filesystem, unless local storage is disallowed (LiveKit Cloud), which refuses the
 * request with `request has missing or invalid field: output`. The server's `prefix` applies to
 * request storage too: the object key is `path.Join(prefix, filename)` and `filename` keeps
 * reporting the templated path without it. Ali OSS is refused as not emulated.
 *
 * `location` is livekit/storage's `location()`: a Go `url.URL{Scheme: "https", ...}.String()`,
 * so it is always https (an endpoint's scheme is dropped) and the path is escaped the way Go
 * escapes paths (UTF-8 bytes and most punctuation percent-encoded, `/` kept).
 */
import { posix } from 'node:path';
import { AzureBlobUpload, GCPUpload, S3Upload } from '@livekit/protocol';
import type { EncodedFileOutput } from '@livekit/protocol';
import { TwirpError, TwirpErrors } from './twirp.ts';

export type StorageProvider = 's3' | 'gcp' | 'azure';

/** Fields of livekit `S3Upload` (server YAML `storage.s3`), as a plain object. */
export interface S3StorageSettings {
  accessKey?: string;
  secret?: string;
  sessionToken?: string;
  region?: string;
  /** May carry a scheme (`http://minio:9000`); none means AWS. */
  endpoint?: string;
  bucket: string;
  forcePathStyle?: boolean;
  metadata?: Record<string, string>;
  tagging?: string;
  contentDisposition?: string;
}

/** Fields of livekit `GCPUpload` (server YAML `storage.gcp`). */
export interface GcpStorageSettings {
  /** The service-account JSON, as a string. */
  credentials?: string;
  bucket: string;
}

/** Fields of livekit `AzureBlobUpload` (server YAML `storage.azure`). */
export interface AzureStorageSettings {
  accountName: string;
  accountKey: string;
  containerName: string;
}

/** A self-hosted egress `storage:` block. */
export interface ServerStorageConfig {
  s3?: S3StorageSettings;
  gcp?: GcpStorageSettings;
  azure?: AzureStorageSettings;
  /** Joined before every object key, request storage included; '' by default. */
  prefix?: string;
}

export type UploadTarget =
  | { provider: 's3'; settings: S3Upload }
  | { provider: 'gcp'; settings: GCPUpload }
  | { provider: 'azure'; settings: AzureBlobUpload };

/** What an egress uploads with, unredacted: for tests and tools in-process only, never over HTTP. */
export interface EgressStorage {
  source: 'request' | 'server';
  provider: StorageProvider;
  /** The upload message as proto3 JSON (camelCase names, empty fields omitted), secrets included. */
  settings: Record<string, unknown>;
  prefix: string;
  /** The object key: `path.posix.join(prefix, filename)`. */
  key: string;
}

export interface ResolvedStorage {
  target: UploadTarget;
  source: 'request' | 'server';
  prefix: string;
}

/** livekit/egress uploader names, used in `<name> upload failed: …`. */
export const PROVIDER_NAMES: Readonly<Record<StorageProvider, string>> = {
  s3: 'S3',
  gcp: 'GCP',
  azure: 'Azure',
};

function serverTarget(server: ServerStorageConfig | undefined): UploadTarget | undefined {
  if (server?.s3) return { provider: 's3', settings: new S3Upload(server.s3) };
  if (server?.gcp) return { provider: 'gcp', settings: new GCPUpload(server.gcp) };
  if (server?.azure) return { provider: 'azure', settings: new AzureBlobUpload(server.azure) };
  return undefined;
}

/** The storage an egress file output uploads to, or null for the local filesystem. */
export function resolveEgressStorage(options: {
  file: EncodedFileOutput;
  server: ServerStorageConfig | undefined;
  requireStorage: boolean;
}): ResolvedStorage | null {
  const prefix = options.server?.prefix ?? '';
  const upload = options.file.output;
  switch (upload.case) {
    case 's3':
      return { target: { provider: 's3', settings: upload.value.clone() }, source: 'request', prefix };
    case 'gcp':
      return { target: { provider: 'gcp', settings: upload.value.clone() }, source: 'request', prefix };
    case 'azure':
      return { target: { provider: 'azure', settings: upload.value.clone() }, source: 'request', prefix };
    case 'aliOSS':
      throw new TwirpError('unimplemented', 'the LiveKit emulator does not upload to Ali OSS');
    default: {
      const target = serverTarget(options.server);
      if (target) return { target, source: 'server', prefix };
      if (options.requireStorage) throw TwirpErrors.invalidField('output');
      return null;
    }
  }
}

/** livekit/egress uploader: `path.Join(prefix, storageFilepath)`. */
export function objectKey(prefix: string, filename: string): string {
  return goPathJoin(prefix, filename);
}

export function describeStorage(resolved: ResolvedStorage, key: string): EgressStorage {
  return {
    source: resolved.source,
    provider: resolved.target.provider,
    settings: resolved.target.settings.toJson() as Record<string, unknown>,
    prefix: resolved.prefix,
    key,
  };
}

/** Go's `url.URL.EscapedPath` for a path without RawPath (`shouldEscape(c, encodePath)`). */
function goEscapePath(path: string): string {
  let escaped = '';
  for (const byte of Buffer.from(path, 'utf8')) {
    const char = String.fromCharCode(byte);
    escaped += /^[A-Za-z0-9\-_.~$&+,/:;=@]$/.test(char)
      ? char
      : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return escaped;
}

/** Go's `url.URL{Scheme: "https", Host, Path}.String()`. */
function httpsUrl(host: string, path: string): string {
  const escaped = goEscapePath(path);
  return `https://${host}${escaped === '' || escaped.startsWith('/') ? '' : '/'}${escaped}`;
}

/** Go's `path.Join`: like posix.join, but empty elements vanish and no trailing slash stays. */
function goPathJoin(...elements: string[]): string {
  const nonEmpty = elements.filter((element) => element !== '');
  if (nonEmpty.length === 0) return '';
  const joined = posix.normalize(nonEmpty.join('/'));
  return joined.length > 1 && joined.endsWith('/') ? joined.slice(0, -1) : joined;
}

function withoutScheme(endpoint: string): string {
  return endpoint.replace(/^https?:\/\//, '');
}

/** The `location` livekit/storage (egress v1.14) reports for an object written at `key`. */
export function egressLocation(target: UploadTarget, key: string): string {
  switch (target.provider) {
    case 's3': {
      const endpoint = withoutScheme(
        target.settings.endpoint === '' ? 's3.amazonaws.com' : target.settings.endpoint,
      );
      return target.settings.forcePathStyle
        ? httpsUrl(endpoint, goPathJoin(target.settings.bucket, key))
        : httpsUrl(`${target.settings.bucket}.${endpoint}`, key);
    }
    case 'gcp':
      return httpsUrl(`${target.settings.bucket}.storage.googleapis.com`, key);
    case 'azure':
      return httpsUrl(
        `${target.settings.accountName}.blob.core.windows.net`,
        goPathJoin(target.settings.containerName, key),
      );
  }
}
