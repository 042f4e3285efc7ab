/**
 * Webhook delivery, as LiveKit's `ResourceURLNotifier` does it, plus the per-room faults tests
 * ask for.
 *
 * Policy:
 * - One ordered queue per target URL and resource, as LiveKit's `ResourceURLNotifier` (its
 *   default notifier) keys them with `EventKey`: an egress's events by its egress id, a room's,
 *   its participants' and tracks' by the room's name. Within a queue an event is delivered (or
 *   given up on) before the next one starts, so a slow or delayed event holds back later ones
 *   of the same resource; queues run concurrently, so a room's egress events may overtake its
 *   participant events, as they may from LiveKit. Other reordering only happens through an
 *   explicit `hold` behaviour.
 * - Non-2xx answers and network errors are retried with exponential backoff, a few times,
 *   like go-retryablehttp; then the event is lost for that target (LiveKit keeps no outbox).
 * - Faults (`drop`, `duplicate`, `delayMs`, `hold`) are read from the room's behaviour when the
 *   event is emitted.
 * - A filter (`webhook.filter_params` in LiveKit's config: include_events, else exclude_events)
 *   decides which events the configured URLs get; an egress request's own webhooks get every
 *   event of it, as LiveKit's notifier for them has no filter.
 * - `close()` aborts in-flight requests and pending waits; nothing is delivered afterwards.
 */
import { setMaxListeners, type EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import type { WebhookEvent } from '@livekit/protocol';
import type { LiveKitEmulatorEventMap, EmittedWebhook } from './events.ts';
import type { Clock } from './clock.ts';
import { unixSeconds } from './clock.ts';
import { newGuid } from './ids.ts';
import type { EmulatorLogger } from './logger.ts';
import type { EmulatedWebhookEventName, RoomBehaviour } from './room-behaviour.ts';
import { appliesTo, perEventValue } from './room-behaviour.ts';
import { signWebhook } from './webhook-signing.ts';

export const WEBHOOK_CONTENT_TYPE = 'application/webhook+json';
export const WEBHOOK_USER_AGENT = 'LiveKit';
export const DEFAULT_WEBHOOK_MAX_ATTEMPTS = 4;
export const DEFAULT_WEBHOOK_RETRY_BASE_MS = 100;
/** Per attempt; a receiver slower than this counts as a failed attempt. */
export const WEBHOOK_REQUEST_TIMEOUT_MS = 5_000;

export interface WebhookTarget {
  url: string;
  apiKey: string;
  apiSecret: string;
}

/** LiveKit's `FilterParams`: `includeEvents` wins over `excludeEvents`; neither, every event. */
export interface WebhookFilter {
  includeEvents?: readonly string[] | undefined;
  excludeEvents?: readonly string[] | undefined;
}

function webhookAllowed(filter: WebhookFilter | undefined, event: string): boolean {
  if (filter?.includeEvents && filter.includeEvents.length > 0) return filter.includeEvents.includes(event);
  if (filter?.excludeEvents && filter.excludeEvents.length > 0) return !filter.excludeEvents.includes(event);
  return true;
}

export interface WebhookRetryOptions {
  /** Attempts per event and target, the first included; default 4. */
  maxAttempts?: number;
  /** Wait before the second attempt, doubled for each further one; default 100 ms. */
  baseDelayMs?: number;
}

interface PreparedWebhook extends EmittedWebhook {
  targets: WebhookTarget[];
}

interface Delivery {
  webhook: PreparedWebhook;
  target: WebhookTarget;
  /** The resource queue it goes through (`eventKey`). */
  queue: string;
  delayMs: number;
  duplicate: boolean;
}

/** The resource an event's queue is keyed by: LiveKit's `webhook.EventKey`, in its order. */
function eventKey(event: WebhookEvent): string {
  if (event.egressInfo) return event.egressInfo.egressId;
  if (event.ingressInfo) return event.ingressInfo.ingressId;
  if (event.room) return event.room.name;
  if (event.participant) return event.participant.identity;
  if (event.track) return event.track.sid;
  return 'default';
}

export class WebhookDispatcher {
  readonly #targets: WebhookTarget[];
  readonly #filter: WebhookFilter | undefined;
  readonly #behaviourFor: (roomName: string) => RoomBehaviour | undefined;
  readonly #clock: Clock;
  readonly #events: EventEmitter<LiveKitEmulatorEventMap>;
  readonly #logger: EmulatorLogger;
  readonly #maxAttempts: number;
  readonly #retryBaseMs: number;
  readonly #abort = new AbortController();
  readonly #queues = new Map<string, Promise<void>>();
  readonly #held = new Map<string, PreparedWebhook[]>();

  /** Sends every later webhook to this target too (LiveKit's `webhook.urls` is a list). */
  addTarget(target: WebhookTarget): void {
    this.#targets.push(target);
  }

  constructor(options: {
    targets: readonly WebhookTarget[];
    behaviourFor: (roomName: string) => RoomBehaviour | undefined;
    clock: Clock;
    events: EventEmitter<LiveKitEmulatorEventMap>;
    logger: EmulatorLogger;
    retry?: WebhookRetryOptions | undefined;
    /** For the configured targets only. */
    filter?: WebhookFilter | undefined;
  }) {
    this.#targets = [...options.targets];
    this.#filter = options.filter;
    // Every delivery in flight (one per resource queue, hundreds in a burst) listens to it.
    setMaxListeners(0, this.#abort.signal);
    this.#behaviourFor = options.behaviourFor;
    this.#clock = options.clock;
    this.#events = options.events;
    this.#logger = options.logger;
    this.#maxAttempts = Math.max(1, options.retry?.maxAttempts ?? DEFAULT_WEBHOOK_MAX_ATTEMPTS);
    this.#retryBaseMs = Math.max(0, options.retry?.baseDelayMs ?? DEFAULT_WEBHOOK_RETRY_BASE_MS);
  }

  get #closed(): boolean {
    return this.#abort.signal.aborted;
  }

  /**
   * Stamps `event` with an id and creation time and sends it to every configured URL plus
   * `extraTargets` (an egress request's own `webhooks`).
   */
  emit(options: { event: WebhookEvent; roomName: string; extraTargets?: readonly WebhookTarget[] }): void {
    if (this.#closed) return;
    const { event, roomName } = options;
    event.id = newGuid('EV_');
    event.createdAt = unixSeconds(this.#clock());
    const name = event.event as EmulatedWebhookEventName;
    const webhook: PreparedWebhook = {
      id: event.id,
      name,
      roomName,
      body: event.toJsonString(),
      event: event.clone(),
      targets: [
        ...(webhookAllowed(this.#filter, event.event) ? this.#targets : []),
        ...(options.extraTargets ?? []),
      ],
    };
    const { targets: _targets, ...emitted } = webhook;
    this.#events.emit('webhook:emitted', emitted);

    const behaviour = this.#behaviourFor(roomName)?.webhooks;
    if (appliesTo(behaviour?.drop, name)) {
      this.#events.emit('webhook:dropped', emitted);
    } else if (behaviour?.hold?.some((rule) => rule.event === name)) {
      const held = this.#held.get(roomName) ?? [];
      held.push(webhook);
      this.#held.set(roomName, held);
      this.#events.emit('webhook:held', emitted);
      return;
    } else {
      this.#enqueue(webhook);
    }

    const releases = behaviour?.hold?.filter((rule) => rule.until === name).map((rule) => rule.event) ?? [];
    // Released behind the event that releases them: in its queue, so they arrive after it.
    if (releases.length > 0) {
      this.#release(roomName, (held) => releases.includes(held.name), eventKey(webhook.event));
    }
  }

  /** Delivers every event a `hold` behaviour is keeping back for the room, in emission order. */
  releaseHeld(roomName: string): void {
    this.#release(roomName, () => true);
  }

  /** Resolves once every queued delivery has finished (held events excluded). */
  async idle(): Promise<void> {
    for (;;) {
      const tails = [...this.#queues.values()];
      await Promise.all(tails);
      if ([...this.#queues.values()].every((tail, index) => tail === tails[index])) return;
    }
  }

  async close(): Promise<void> {
    this.#abort.abort();
    this.#held.clear();
    await Promise.all([...this.#queues.values()]);
  }

  #release(roomName: string, matches: (webhook: PreparedWebhook) => boolean, queue?: string): void {
    const held = this.#held.get(roomName) ?? [];
    const keep = held.filter((webhook) => !matches(webhook));
    if (keep.length > 0) this.#held.set(roomName, keep);
    else this.#held.delete(roomName);
    for (const webhook of held.filter(matches)) this.#enqueue(webhook, queue);
  }

  /** `queue`: the resource whose queue it joins, its own by default. */
  #enqueue(webhook: PreparedWebhook, queue = eventKey(webhook.event)): void {
    const behaviour = this.#behaviourFor(webhook.roomName)?.webhooks;
    const delayMs = Math.max(0, perEventValue(behaviour?.delayMs, webhook.name) ?? 0);
    const copies = appliesTo(behaviour?.duplicate, webhook.name) ? 2 : 1;
    for (const target of webhook.targets) {
      for (let copy = 0; copy < copies; copy++) {
        this.#append({ webhook, target, queue, delayMs: copy === 0 ? delayMs : 0, duplicate: copy > 0 });
      }
    }
  }

  #append(delivery: Delivery): void {
    const key = `${delivery.target.url} ${delivery.queue}`;
    const tail = this.#queues.get(key) ?? Promise.resolve();
    const next = tail.then(() => this.#deliver(delivery));
    this.#queues.set(key, next);
    void next.then(() => {
      if (this.#queues.get(key) === next) this.#queues.delete(key);
    });
  }

  async #deliver(delivery: Delivery): Promise<void> {
    const { webhook, target } = delivery;
    const ref = { url: target.url, id: webhook.id, name: webhook.name, roomName: webhook.roomName };
    const signal = this.#abort.signal;
    try {
      if (signal.aborted) return;
      if (delivery.delayMs > 0) {
        this.#events.emit('webhook:delayed', { ...ref, delayMs: delivery.delayMs });
        await sleep(delivery.delayMs, undefined, { signal });
      }
      const authorization = signWebhook({
        body: webhook.body,
        apiKey: target.apiKey,
        apiSecret: target.apiSecret,
      });
      let lastError = '';
      for (let attempt = 1; attempt <= this.#maxAttempts; attempt++) {
        if (attempt > 1) await sleep(this.#retryBaseMs * 2 ** (attempt - 2), undefined, { signal });
        try {
          const response = await request(target.url, {
            method: 'POST',
            headers: {
              'content-type': WEBHOOK_CONTENT_TYPE,
              authorization,
              'user-agent': WEBHOOK_USER_AGENT,
            },
            body: webhook.body,
            signal,
            headersTimeout: WEBHOOK_REQUEST_TIMEOUT_MS,
            bodyTimeout: WEBHOOK_REQUEST_TIMEOUT_MS,
          });
          await response.body.dump().catch(() => undefined);
          const status = response.statusCode;
          if (status >= 200 && status < 300) {
            this.#logger.debug({ ...ref, attempt, status }, 'webhook delivered');
            this.#events.emit('webhook:delivered', {
              ...ref,
              attempt,
              status,
              duplicate: delivery.duplicate,
            });
            return;
          }
          lastError = `HTTP ${status}`;
          this.#events.emit('webhook:attempt-failed', { ...ref, attempt, status });
        } catch (error) {
          if (signal.aborted) return;
          lastError = error instanceof Error ? error.message : String(error);
          this.#events.emit('webhook:attempt-failed', { ...ref, attempt, error: lastError });
        }
      }
      this.#logger.warn({ ...ref, attempts: this.#maxAttempts, error: lastError }, 'webhook delivery failed');
      this.#events.emit('webhook:failed', { ...ref, attempts: this.#maxAttempts, error: lastError });
    } catch (error) {
      if (signal.aborted) return; // closing: pending waits end here
      this.#logger.error({ ...ref, err: error }, 'webhook delivery crashed');
      this.#events.emit('emulator:error', { error, context: `webhook ${webhook.name} to ${target.url}` });
    }
  }
}
