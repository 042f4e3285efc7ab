/**
 * Options of `createLiveKitEmulator`. Defaults keep a test run fast (an egress is ACTIVE after
 * 50 ms and finalised 200 ms after it ends) while the room timeouts keep LiveKit's values, so
 * the hang-up → departure → room closed sequence has production timing unless a test shrinks it.
 */
import type { Clock } from './clock.ts';
import type { ServerStorageConfig } from './egress-storage.ts';
import type { EmulatorLogger } from './logger.ts';
import type { WebhookFilter, WebhookRetryOptions } from './webhook-dispatcher.ts';

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_ACTIVATE_AFTER_MS = 50;
export const DEFAULT_FINALIZE_AFTER_MS = 200;
/** LiveKit's `departure_timeout` default (20 s). */
export const DEFAULT_DEPARTURE_TIMEOUT_MS = 20_000;
/** LiveKit's `empty_timeout` default (300 s). */
export const DEFAULT_EMPTY_TIMEOUT_MS = 300_000;
/** How long `waitForEgress`/`waitForEvent` wait before rejecting, unless told otherwise. */
export const DEFAULT_WAIT_TIMEOUT_MS = 10_000;

export interface LiveKitEmulatorOptions {
  /** API key → secret. Twirp calls must be signed by one of them; webhooks are signed by one. */
  keys: Record<string, string>;
  /**
   * Stands for the egress host's filesystem: an egress file that no storage applies to is
   * written inside it, at the request's templated `filepath`, and reported with its absolute
   * path as `location`.
   */
  recordingsDir: string;
  /**
   * LiveKit Cloud mode (egress `disallow_local_storage`): a file output with no upload settings
   * and no `serverStorage` is refused with Twirp invalid_argument (400) "request has missing or
   * invalid field: output". False by default (self-hosted egress writing local files).
   */
  requireStorage?: boolean;
  /**
   * A self-hosted egress `storage:` block: where files go when the request carries no s3/gcp/
   * azure settings (request storage wins; the first of s3, gcp, azure is used). Never echoed
   * in `EgressInfo.request`. Its `prefix` is joined before every object key, request storage
   * included, and is not part of the reported `filename`.
   */
  serverStorage?: ServerStorageConfig;
  /**
   * GCS JSON API root for `gcp` uploads (e.g. a fake at `http://127.0.0.1:<port>`); real egress
   * can only reach Google, which is the default. With it the SDK sends no credentials.
   */
  gcsEndpoint?: string;
  /**
   * Blob service URL for `azure` uploads, account path included for Azurite
   * (`http://127.0.0.1:<port>/devstoreaccount1`); `https://<account>.blob.core.windows.net`
   * (where real egress always goes) by default.
   */
  azureBlobEndpoint?: string;
  /** Interface to listen on; 127.0.0.1 by default. */
  host?: string;
  /** Port to listen on; 0 (any free port) by default. */
  port?: number;
  /** Receivers of every webhook event, like the server's `webhook.urls`. */
  webhookUrls?: string[];
  /** API key that signs webhooks (and per-request webhooks with an unknown key); the first key by default. */
  webhookApiKey?: string;
  webhookRetry?: WebhookRetryOptions;
  /** Which events `webhookUrls` get, like the server's `webhook.filter_params`; all by default. */
  webhookFilter?: WebhookFilter;
  /** STARTING → ACTIVE delay once someone is in the room; 50 ms by default. */
  activateAfterMs?: number;
  /** ENDING → COMPLETE (or another end) delay; 200 ms by default. */
  finalizeAfterMs?: number;
  /** Room close after the last caller left, if only agents/recorders remain; 20 000 ms by default. */
  departureTimeoutMs?: number;
  /** Room close after creation if no caller ever joined; 300 000 ms by default. */
  emptyTimeoutMs?: number;
  /** Wall clock for reported timestamps and recording lengths; `Date.now` by default. */
  now?: Clock;
  logger?: EmulatorLogger;
  /** Serve the `/_emulator/...` JSON control endpoints; true by default. */
  controlApi?: boolean;
}
