/**
 * Errors the SDK rejects promises with.
 *
 *     RoomgateError
 *      ├── ServerError        the gateway answered `error` (code, reason) to this message
 *      ├── AckTimeoutError    no `ack` after the timeout and every resend
 *      ├── QueueFullError     the offline queue was full (see `queueOverflow`)
 *      └── MessageTooBigError above `maxMessageBytes`, or the gateway closed 1009 on it: never resent
 */
import type { ErrorData } from "./types.js";

export class RoomgateError extends Error {
  override name = "RoomgateError";
}

export class ServerError extends RoomgateError {
  override name = "ServerError";
  constructor(readonly error: ErrorData) {
    super(`${error.code}: ${error.message}`);
  }
  get code(): string {
    return this.error.code;
  }
}

export class AckTimeoutError extends RoomgateError {
  override name = "AckTimeoutError";
}

export class QueueFullError extends RoomgateError {
  override name = "QueueFullError";
}

export class MessageTooBigError extends RoomgateError {
  override name = "MessageTooBigError";
}
