/** The wire types of docs/protocol.md: the envelope and every message type. */

export type Priority = "high" | "normal" | "low";

export interface Metadata {
  correlation_id?: string;
  priority?: Priority;
  ttl?: number;
  /** The message's position in its room (1, 2, 3 ...). */
  offset?: number;
  /** The room's history epoch; offsets compare only within one epoch. */
  epoch?: string;
  requiresAck?: boolean;
  traceparent?: string;
  tracestate?: string;
  [key: string]: unknown;
}

/** Every message in both directions uses this envelope. */
export interface Envelope<T extends string = string, D = Record<string, unknown>> {
  id: string;
  type: T;
  timestamp: string;
  sender: string;
  room?: string;
  data: D;
  metadata: Metadata;
}

export type RoomEventType =
  | "agent_connected"
  | "agent_disconnected"
  | "agent_updated"
  | "agent_status"
  | "task_created"
  | "task_started"
  | "task_progress"
  | "task_completed"
  | "task_failed"
  | "alert_triggered"
  | "alert_acknowledged"
  | "alert_resolved"
  | "alert_escalated"
  | "package_updated"
  | "service_status"
  | "metrics_update"
  | "inventory_refresh";

export interface Limits {
  maxConnectionsPerIp: number;
  maxConnectionsPerUser: number;
  messagesPerUserPerMinute: number;
  maxMessageBytes: number;
  maxSubscriptionsPerConnection: number;
  heartbeatIntervalSeconds: number;
  heartbeatTimeoutSeconds: number;
  authDeadlineSeconds: number;
  outboundQueueSize: number;
}

export interface WelcomeData {
  user_id: string;
  kind: "user" | "agent" | "service";
  session_id: string;
  roles: string[];
  permissions: string[];
  groups: string[];
  teams: string[];
  expires_at: number;
  heartbeat_interval: number;
  heartbeat_timeout: number;
  server_time: number;
  gateway: string;
  compression: "deflate" | null;
  limits: Partial<Limits>;
}

export interface SubscribedData {
  room: string;
  personal?: boolean;
  recovered?: boolean;
  epoch?: string;
  replayed?: number;
  missed?: number;
  mailbox?: number;
}

export interface UnsubscribedData {
  room: string;
  reason: string;
}

export interface PongData {
  timestamp: number | string | null;
  server_time: number;
}

export type ErrorCode =
  | "malformed_json"
  | "invalid_message"
  | "unknown_type"
  | "not_authenticated"
  | "unauthorized"
  | "connection_limit"
  | "already_authenticated"
  | "permission_denied"
  | "publish_not_allowed"
  | "invalid_room"
  | "not_subscribed"
  | "too_many_subscriptions"
  | "gateway_room_limit"
  | "rate_limited"
  | "compression_error"
  | "inflated_too_large"
  | "batch_too_large"
  | "nesting_not_allowed"
  | "refresh_failed"
  | "not_found"
  | "unavailable";

export interface ErrorData {
  code: ErrorCode;
  message: string;
  ref_id?: string;
  room?: string;
  reason?: string;
  retry_after?: number;
}

export interface AckData {
  id: string;
  room: string;
  offset?: number;
  alert_id?: string;
  changed?: boolean;
}

export interface TokenExpiringData {
  expires_at: number;
  seconds_left: number;
}

export interface ReconnectData {
  delay_ms: number;
  reason: string;
}

/** Messages the server sends (replies and room events); `batch`/`compressed` are unpacked by the SDK. */
export type ServerMessage =
  | Envelope<"welcome", WelcomeData>
  | Envelope<"subscribed", SubscribedData>
  | Envelope<"unsubscribed", UnsubscribedData>
  | Envelope<"pong", PongData>
  | Envelope<"error", ErrorData>
  | (Envelope<"ack", AckData> & { ackId: string })
  | Envelope<"token_expiring", TokenExpiringData>
  | Envelope<"token_refreshed", { expires_at: number }>
  | Envelope<"reconnect", ReconnectData>
  | RoomEvent;

/** A room event as delivered to subscription handlers. */
export interface RoomEvent<D = Record<string, unknown>> extends Envelope<string, D> {
  room: string;
}

/** Client messages (docs/protocol.md "Client messages"). */
export type ClientMessage =
  | { type: "auth"; token: string }
  | { type: "refresh"; token: string }
  | { type: "ping"; timestamp: number }
  | { type: "subscribe"; data: { room: string; since?: { offset: number; epoch: string } }; metadata?: Partial<Metadata> }
  | { type: "unsubscribe"; data: { room: string } }
  | { type: "ack"; ackId: string }
  | { type: "batch"; messages: ClientMessage[] }
  | { type: "compressed"; data: string }
  | ClientEvent;

export interface ClientEvent {
  type: RoomEventType | string;
  room: string;
  data: Record<string, unknown>;
  id?: string;
  requiresAck?: boolean;
  metadata?: Partial<Metadata>;
}

/** Close codes of docs/protocol.md "Close codes", plus the transport's 1000/1006. */
export const CloseCode = {
  NORMAL: 1000,
  ABNORMAL: 1006,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  SERVICE_RESTART: 1012,
  TRY_AGAIN_LATER: 1013,
  UNAUTHORIZED: 4001,
  HEARTBEAT_TIMEOUT: 4008,
  TOO_MANY_CONNECTIONS: 4029,
  RATE_LIMIT_EXCEEDED: 4030,
} as const;
