/** The LiveKit API emulator: see emulator.ts for the model and room-behaviour.ts for faults. */
export { createLiveKitEmulator } from './emulator.ts';
export type { LiveKitEmulator, SipCall, SipCallSpec, WaitOptions } from './emulator.ts';
export type { LiveKitEmulatorOptions } from './emulator-options.ts';
export { roomBehaviourSchema } from './control-routes.ts';
export {
  DEFAULT_ACTIVATE_AFTER_MS,
  DEFAULT_DEPARTURE_TIMEOUT_MS,
  DEFAULT_EMPTY_TIMEOUT_MS,
  DEFAULT_FINALIZE_AFTER_MS,
} from './emulator-options.ts';
export type { EmittedWebhook, LiveKitEmulatorEventMap, WebhookDeliveryRef } from './events.ts';
export type { ListEgressFilter } from './egress-manager.ts';
export type {
  AzureStorageSettings,
  EgressStorage,
  GcpStorageSettings,
  S3StorageSettings,
  ServerStorageConfig,
  StorageProvider,
} from './egress-storage.ts';
export type { EmulatorLogger } from './logger.ts';
export { EMULATED_WEBHOOK_EVENTS } from './room-behaviour.ts';
export type {
  EgressFailure,
  EgressOutcome,
  EmulatedWebhookEventName,
  RoomBehaviour,
  StartFailure,
  WebhookBehaviour,
} from './room-behaviour.ts';
export type { ParticipantSpec, RoomSpec } from './room-registry.ts';
export type { WebhookRetryOptions } from './webhook-dispatcher.ts';
