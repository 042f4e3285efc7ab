/**
 * The CRM sandbox's public vocabulary: its endpoints, what it records, and its options.
 *
 * Everything here is JSON-safe, because the same shapes are served by `GET /_sandbox/received`
 * to the demo and to people scripting the sandbox over HTTP.
 */
import type { CallData } from '../../payload/call-data.ts';
import type { CrmFault } from './faults.ts';

/** The two CRM routes, named after their paths (`POST /upload`, `POST /call-data`). */
export type CrmSandboxEndpoint = 'upload' | 'call-data';
export const CRM_SANDBOX_ENDPOINTS: readonly CrmSandboxEndpoint[] = ['upload', 'call-data'];

/** Where the upload answer puts the stored file's URL; the contract allows all of these. */
export type UploadUrlField = 'url' | 'fileUrl' | 'location';

export interface UploadAnswerShape {
  /** HTTP status of a successful upload. Default 201. */
  status?: 200 | 201;
  /** Name of the URL field. Default `url`. */
  urlField?: UploadUrlField;
  /** Put the fields under `data` (`{"success": true, "data": {...}}`) instead of the top level. */
  underData?: boolean;
}

export interface CrmSandboxOptions {
  /** Uploaded files go to `<storageDir>/uploads`, call-data documents to `<storageDir>/call-data`. */
  storageDir: string;
  /** When set, `/upload` and `/call-data` require `Authorization: Bearer <apiKey>` (else 401). */
  apiKey?: string | undefined;
  /** Default 127.0.0.1. */
  host?: string | undefined;
  /** Default 0 (an ephemeral port). */
  port?: number | undefined;
  /** Base of the file URLs the sandbox answers (`<publicBaseUrl>/files/<name>`); default its own URL. */
  publicBaseUrl?: string | undefined;
  /** A file larger than this is refused with 413 and not kept. Default 1 GiB. */
  maxUploadBytes?: number | undefined;
  /** A call-data body larger than this is refused with 413. Default 1 MiB. */
  maxJsonBytes?: number | undefined;
  uploadAnswer?: UploadAnswerShape | undefined;
}

export interface ReceivedUpload {
  idempotencyKey: string | null;
  /** The multipart filename, as sent. */
  fileName: string;
  /** The multipart part's Content-Type, as sent. */
  contentType: string;
  sizeBytes: number;
  sha256: string;
  /** Name under `<storageDir>/uploads` and in `/files/<storedName>`. */
  storedName: string;
  /** Absolute path of the stored file. */
  path: string;
  /** The URL the sandbox answered. */
  url: string;
  /** Non-file multipart fields, if the client sent any. */
  fields: Record<string, string>;
  /** The request's `Content-Length` header, or null when it had none. */
  contentLength: number | null;
  /** True when the request body came with `Transfer-Encoding: chunked`. */
  chunked: boolean;
  /** ISO-8601. */
  receivedAt: string;
}

export interface ReceivedCallData {
  idempotencyKey: string | null;
  callId: string;
  document: CallData;
  /** ISO-8601. */
  receivedAt: string;
}

/** A request that repeated an idempotency key and was answered with the first answer. */
export interface ReceivedDuplicate {
  endpoint: CrmSandboxEndpoint;
  idempotencyKey: string;
  /** True when it arrived while the first request with that key was still being handled. */
  concurrent: boolean;
  /** The replayed status. */
  status: number;
}

/** A request the sandbox itself refused (auth, validation, size, media type). Faults are listed apart. */
export interface RejectedRequest {
  endpoint: CrmSandboxEndpoint;
  status: number;
  error: string;
  message: string;
  idempotencyKey: string | null;
}

export interface AppliedFault {
  endpoint: CrmSandboxEndpoint;
  fault: CrmFault;
  idempotencyKey: string | null;
}

export interface CrmSandboxReceived {
  /** Every request that reached `/upload` or `/call-data`, faulted or not. */
  requests: Record<CrmSandboxEndpoint, number>;
  uploads: ReceivedUpload[];
  callData: ReceivedCallData[];
  duplicates: Record<CrmSandboxEndpoint, number>;
  duplicateRequests: ReceivedDuplicate[];
  rejected: RejectedRequest[];
  faults: AppliedFault[];
}
