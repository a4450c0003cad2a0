export { RoomgateClient } from "./client.js";
export type {
  ClientEvents,
  ClientOptions,
  ConnectionState,
  Handler,
  PublishOptions,
  Subscription,
  TransportKind,
} from "./client.js";
export { RoomSet } from "./roomset.js";
export { RoomTracker, type Verdict } from "./room.js";
export { backoffCeiling, backoffDelay, penaltyDelay, DEFAULT_BACKOFF, type BackoffOptions } from "./backoff.js";
export { AckTimeoutError, MessageTooBigError, QueueFullError, RoomgateError, ServerError } from "./errors.js";
export * from "./types.js";
