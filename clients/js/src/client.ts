/**
 * RoomgateClient: the protocol of docs/protocol.md over a WebSocket, or over SSE + POST when
 * WebSockets are blocked, with one API. It reconnects with backoff, resubscribes every room
 * with `since`, drops duplicates by id, resyncs on an offset gap, acks `requiresAck`
 * messages, sends publishes reliably, batches and compresses.
 */
import { backoffDelay, DEFAULT_BACKOFF, penaltyDelay, type BackoffOptions } from "./backoff.js";
import { canDeflate, canInflate, deflate, unpack, utf8Length, uuid } from "./codec.js";
import { Emitter } from "./emitter.js";
import { AckTimeoutError, MessageTooBigError, QueueFullError, ServerError } from "./errors.js";
import { RoomTracker } from "./room.js";
import {
  openSse,
  openWebSocket,
  type EventSourceCtor,
  type FetchFn,
  type Link,
  type WebSocketCtor,
} from "./transport.js";
import {
  CloseCode,
  type AckData,
  type ClientMessage,
  type ErrorData,
  type Priority,
  type RoomEvent,
  type SubscribedData,
  type UnsubscribedData,
  type WelcomeData,
} from "./types.js";

export type ConnectionState = "disconnected" | "connecting" | "connected" | "reconnecting" | "failed";
export type TransportKind = "websocket" | "sse";

/** Every allowed transition; anything else is a bug and throws. */
const TRANSITIONS: Record<ConnectionState, readonly ConnectionState[]> = {
  disconnected: ["connecting"],
  connecting: ["connected", "reconnecting", "failed", "disconnected"],
  connected: ["reconnecting", "failed", "disconnected"],
  reconnecting: ["connecting", "failed", "disconnected"],
  failed: ["connecting", "disconnected"],
};

export type Handler = (msg: RoomEvent) => void | Promise<void>;

export interface ClientOptions {
  /** WebSocket URL (default: `ws(s)://<page host>/ws`). */
  url?: string;
  /** SSE URL (default: the WebSocket URL with http(s) and `/sse`). */
  sseUrl?: string;
  /** A fixed token; or use `getToken`. */
  token?: string;
  /** Called at every connect, on `token_expiring` (then `refresh`) and after a 4001. */
  getToken?: () => string | Promise<string>;
  /** Send the token as `?token=` instead of a first `auth` message (which keeps it out of access logs). */
  tokenInQuery?: boolean;
  /** Transports in order of preference (default both: WebSocket, then SSE). */
  transports?: TransportKind[];
  /** Consecutive WebSocket failures before the SSE fallback (2). */
  fallbackAfter?: number;
  /** While on SSE, try a WebSocket again this often, ms (60000). */
  upgradeInterval?: number;
  /** Backoff (1 s × 1.5ⁿ, capped at 30 s, full jitter) and attempts before `failed` (10; 0 = forever). */
  reconnect?: Partial<BackoffOptions> & { maxAttempts?: number };
  /** A connect that has not reached `welcome` by then is abandoned, ms (10000). */
  connectTimeout?: number;
  /** Reliable publish: wait for `ack` this long (5000 ms), resend this often with the same id (3). */
  ackTimeout?: number;
  ackRetries?: number;
  /** Publishes kept while disconnected (100). */
  queueSize?: number;
  /** When the queue is full: reject the new publish (default) or drop (reject) the oldest. */
  queueOverflow?: "reject-new" | "drop-oldest";
  /** Outgoing batching: flush at `size` messages (10) or `delay` ms after the first (100); false: off. */
  batch?: { size?: number; delay?: number } | false;
  /** Ask for compressed frames: "auto" (default) when DecompressionStream exists. */
  compress?: boolean | "auto";
  /** Outgoing frames above this many bytes are compressed (1024) when CompressionStream exists. */
  compressThreshold?: number;
  /** Ack `requiresAck` messages once every handler returned (true). */
  autoAck?: boolean;
  /** Injected for tests and Node. */
  WebSocket?: WebSocketCtor;
  EventSource?: EventSourceCtor;
  fetch?: FetchFn;
  random?: () => number;
  /** Where `online`/`offline`/`visibilitychange` come from (default: window/document when present). */
  window?: { addEventListener(t: string, f: () => void): void; removeEventListener(t: string, f: () => void): void; navigator?: { onLine?: boolean } };
  document?: { visibilityState?: string; addEventListener(t: string, f: () => void): void; removeEventListener(t: string, f: () => void): void };
}

export interface PublishOptions {
  /** Wait for the gateway's `ack` (the message is in history and on the bus). */
  ack?: boolean;
  priority?: Priority;
  ttl?: number;
  correlationId?: string;
  /** The envelope id (default: a new UUID). */
  id?: string;
}

export interface Subscription {
  readonly room: string;
  unsubscribe(): void;
}

export interface ClientEvents {
  state: (state: ConnectionState, previous: ConnectionState) => void;
  connected: (info: { gateway: string; transport: TransportKind; welcome: WelcomeData }) => void;
  disconnected: (info: { code: number; reason: string }) => void;
  /** Every wanted room is subscribed again after a (re)connect; `ms` since the link was lost. */
  resubscribed: (info: { ms: number | null; rooms: string[] }) => void;
  latency: (ms: number) => void;
  message: (msg: RoomEvent) => void;
  error: (error: ErrorData) => void;
  /** A `subscribed` answer to a `since`. */
  recovery: (data: SubscribedData) => void;
  /** History could not cover the gap (`recovered: false`): refetch this room's state. */
  unrecovered: (data: SubscribedData) => void;
  /** Offsets jumped on a live connection: the room is being resynced from `offset`. */
  resync: (info: { room: string; offset: number | null }) => void;
  /** The gateway removed you from a room (ACL change). */
  evicted: (data: UnsubscribedData) => void;
  token: (expiresAt: number) => void;
  transport: (kind: TransportKind) => void;
  failed: (reason: string) => void;
}

interface Outgoing {
  msg: ClientMessage & { id?: string };
  ack: boolean;
  resolve: (v: any) => void;
  reject: (e: Error) => void;
  tries: number;
  timer?: ReturnType<typeof setTimeout>;
}

interface RoomEntry {
  tracker: RoomTracker;
  handlers: Set<Handler>;
  wanted: boolean;
  subscribed: boolean;
}

const PERSONAL = /^(user|session)-/;

export class RoomgateClient extends Emitter<ClientEvents> {
  state: ConnectionState = "disconnected";
  /** The transport in use (or tried next). */
  transport: TransportKind;
  welcome: WelcomeData | null = null;
  latency: number | null = null;
  /** Counters, handy in tests and dashboards. */
  readonly stats = { connects: 0, closes: [] as number[], duplicates: 0, resyncs: 0, lastRecoverMs: null as number | null };

  private readonly o: Required<Pick<ClientOptions, "fallbackAfter" | "upgradeInterval" | "connectTimeout" | "ackTimeout" | "ackRetries" | "queueSize" | "queueOverflow" | "compressThreshold" | "autoAck">> & ClientOptions;
  private readonly backoff: BackoffOptions;
  private readonly maxAttempts: number;
  private readonly transports: TransportKind[];
  private readonly rooms = new Map<string, RoomEntry>();
  private readonly personalHandlers = new Set<Handler>();
  private readonly pending = new Map<string, Outgoing>();
  private queue: Outgoing[] = [];
  private link: Link | null = null;
  private linkOpened = false;
  private attempts = 0;
  private wsFailures = 0;
  private authFailures = 0;
  private hint: number | null = null;
  private lostAt: number | null = null;
  private awaitingRooms: Set<string> | null = null;
  private userClosed = false;
  private upgrading = false;
  private lastReceived = 0;
  private lastFrame: Outgoing[] = [];
  private outBatch: { msg: ClientMessage; out?: Outgoing }[] = [];
  private batchTimer: ReturnType<typeof setTimeout> | null = null;
  private heartbeat: ReturnType<typeof setInterval> | null = null;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private connectTimer: ReturnType<typeof setTimeout> | null = null;
  private upgradeTimer: ReturnType<typeof setInterval> | null = null;
  private inbox: Promise<void> = Promise.resolve();
  private outbox: Promise<void> = Promise.resolve();
  private writing = 0;
  private readonly random: () => number;
  private readonly listeners: [any, string, () => void][] = [];

  constructor(options: ClientOptions = {}) {
    super();
    this.o = {
      fallbackAfter: 2,
      upgradeInterval: 60000,
      connectTimeout: 10000,
      ackTimeout: 5000,
      ackRetries: 3,
      queueSize: 100,
      queueOverflow: "reject-new",
      compressThreshold: 1024,
      autoAck: true,
      ...options,
    };
    const { maxAttempts = 10, ...backoff } = options.reconnect ?? {};
    this.backoff = { ...DEFAULT_BACKOFF, ...backoff };
    this.maxAttempts = maxAttempts;
    this.transports = options.transports ?? ["websocket", "sse"];
    this.transport = this.transports[0] ?? "websocket";
    this.random = options.random ?? Math.random;
  }

  // ------------------------------------------------------------------ lifecycle
  /** Connect (again after `disconnect()` or `failed`). */
  connect(): this {
    if (this.state !== "disconnected" && this.state !== "failed") return this;
    this.userClosed = false;
    this.attempts = 0;
    this.listen();
    void this.open();
    return this;
  }

  /** Close and stay closed; subscriptions and queued publishes are kept for a later `connect()`. */
  disconnect(): void {
    this.userClosed = true;
    this.clearTimer("reconnectTimer");
    this.clearTimer("upgradeTimer");
    this.unlisten();
    if (this.link) this.link.close(CloseCode.NORMAL, "client");
    if (this.state !== "disconnected") this.setState("disconnected");
  }

  private setState(next: ConnectionState): void {
    const prev = this.state;
    if (prev === next) return;
    if (!TRANSITIONS[prev].includes(next)) throw new Error(`roomgate: ${prev} -> ${next}`);
    this.state = next;
    this.emit("state", next, prev);
  }

  private async open(): Promise<void> {
    this.clearTimer("reconnectTimer");
    this.setState("connecting");
    let token = this.o.token ?? "";
    try {
      if (this.o.getToken) token = await this.o.getToken();
    } catch {
      return this.closed(CloseCode.ABNORMAL, "getToken failed", null);
    }
    if (this.userClosed || this.state !== "connecting") return;
    const kind = this.transport;
    const handlers = {
      open: () => this.opened(link, token),
      frame: (text: string) => this.frame(link, text),
      close: (code: number, reason: string) => this.closed(code, reason, link),
    };
    this.linkOpened = false;
    let link: Link;
    try {
      link =
        kind === "websocket"
          ? openWebSocket(this.o.WebSocket ?? (globalThis as any).WebSocket, this.url("websocket", token), handlers)
          : openSse(
              this.o.EventSource ?? (globalThis as any).EventSource,
              this.o.fetch ?? ((u, i) => (globalThis as any).fetch(u, i)),
              this.url("sse", token),
              handlers,
            );
    } catch {
      return this.closed(CloseCode.ABNORMAL, "open failed", null);
    }
    this.link = link;
    this.connectTimer = setTimeout(() => link.close(CloseCode.ABNORMAL, "connect timeout"), this.o.connectTimeout);
  }

  /** The URL of a transport (token only with `tokenInQuery`). */
  url(kind: TransportKind, token = ""): string {
    const loc = (globalThis as any).location;
    let base =
      this.o.url ?? (loc ? `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}/ws` : "ws://127.0.0.1:8000/ws");
    if (kind === "sse") base = this.o.sseUrl ?? base.replace(/^ws/, "http").replace(/\/ws(\?|$)/, "/sse$1");
    const u = new URL(base, loc?.href);
    if (this.o.tokenInQuery && token) u.searchParams.set("token", token);
    const compress = this.o.compress ?? "auto";
    if (compress === true || (compress === "auto" && canInflate())) u.searchParams.set("compress", "1");
    return u.toString();
  }

  private opened(link: Link, token: string): void {
    if (link !== this.link) return;
    this.linkOpened = true;
    this.lastReceived = Date.now();
    if (!this.o.tokenInQuery) link.send(JSON.stringify({ type: "auth", token }));
  }

  private closed(code: number, reason: string, link: Link | null): void {
    if (link && link !== this.link) return;
    this.link = null;
    this.clearTimer("connectTimer");
    this.clearTimer("heartbeat");
    this.clearTimer("batchTimer");
    const wasConnected = this.state === "connected";
    const kind = this.transport;
    this.stats.closes.push(code);
    if (wasConnected) this.lostAt = Date.now();
    this.awaitingRooms = null;
    for (const r of this.rooms.values()) {
      r.subscribed = false;
      r.tracker.resyncing = false;
    }
    // What was on its way goes back to the queue, in order, to be resent with the same ids;
    // except after 1009: the gateway refused what was last sent, and it is never resent.
    const tooBig = code === CloseCode.MESSAGE_TOO_BIG ? new Set(this.lastFrame) : new Set<Outgoing>();
    const back: Outgoing[] = [];
    for (const out of this.pending.values()) {
      if (out.timer) clearTimeout(out.timer);
      if (!tooBig.has(out)) back.push(out);
    }
    for (const { out } of this.outBatch) if (out && !out.ack && !tooBig.has(out)) back.push(out);
    this.pending.clear();
    this.outBatch = [];
    for (const out of tooBig) out.reject(new MessageTooBigError("the gateway closed 1009 on this message"));
    this.lastFrame = [];
    this.queue = [...back, ...this.queue];
    if (wasConnected || link) this.emit("disconnected", { code, reason });
    if (this.userClosed) return;

    let delay: number;
    if (this.upgrading) {
      this.upgrading = false;
      delay = 0;
    } else {
      if (kind === "websocket" && !this.linkOpened && !wasConnected) this.wsFailures++;
      if (
        kind === "websocket" &&
        this.wsFailures >= this.o.fallbackAfter &&
        this.transports.includes("sse")
      ) {
        this.switchTo("sse");
        delay = 0;
      } else if (code === CloseCode.UNAUTHORIZED) {
        this.authFailures++;
        if (!this.o.getToken || this.authFailures > 1) return this.fail("unauthorized (4001)");
        delay = 0; // a new token, at once
      } else {
        if (++this.attempts > this.maxAttempts && this.maxAttempts > 0) {
          return this.fail(`gave up after ${this.maxAttempts} attempts`);
        }
        delay =
          this.hint ??
          (code === CloseCode.TOO_MANY_CONNECTIONS || code === CloseCode.RATE_LIMIT_EXCEEDED
            ? penaltyDelay(this.random, this.backoff)
            : backoffDelay(this.attempts - 1, this.random, this.backoff));
      }
    }
    this.hint = null;
    this.setState("reconnecting");
    this.schedule(delay);
  }

  private fail(reason: string): void {
    this.setState("failed");
    this.emit("failed", reason);
  }

  private schedule(delay: number): void {
    this.clearTimer("reconnectTimer");
    if (this.o.window?.navigator?.onLine === false || (!this.o.window && (globalThis as any).navigator?.onLine === false)) {
      return; // `online` reconnects
    }
    this.reconnectTimer = setTimeout(() => void this.open(), delay);
  }

  private switchTo(kind: TransportKind): void {
    if (this.transport === kind) return;
    this.transport = kind;
    this.emit("transport", kind);
    this.clearTimer("upgradeTimer");
    if (kind === "sse" && this.transports.includes("websocket")) {
      this.upgradeTimer = setInterval(() => this.probeWebSocket(), this.o.upgradeInterval);
    }
  }

  /** On SSE: does a WebSocket open now? Then move back to it (recovering with `since`). */
  private probeWebSocket(): void {
    let probe: any;
    try {
      probe = new (this.o.WebSocket ?? (globalThis as any).WebSocket)(this.url("websocket"));
    } catch {
      return;
    }
    probe.onopen = () => {
      probe.close();
      this.wsFailures = 0;
      this.switchTo("websocket");
      if (this.link) {
        this.upgrading = true;
        this.link.close(CloseCode.NORMAL, "upgrade");
      }
    };
    probe.onerror = probe.onclose = () => {
      /* still blocked */
    };
  }

  private listen(): void {
    const win = this.o.window ?? ((globalThis as any).addEventListener ? (globalThis as any) : null);
    const doc = this.o.document ?? (globalThis as any).document;
    const now = () => {
      if (this.state === "reconnecting") void this.open();
    };
    const visible = () => {
      if (doc?.visibilityState !== "visible") return;
      if (this.state === "reconnecting") void this.open();
      else if (this.state === "connected") this.ping();
    };
    if (win) this.listeners.push([win, "online", now]);
    if (doc) this.listeners.push([doc, "visibilitychange", visible]);
    for (const [t, e, f] of this.listeners) t.addEventListener(e, f);
  }

  private unlisten(): void {
    for (const [t, e, f] of this.listeners.splice(0)) t.removeEventListener(e, f);
  }

  private clearTimer(name: "reconnectTimer" | "connectTimer" | "heartbeat" | "batchTimer" | "upgradeTimer"): void {
    const t = this[name];
    if (t !== null) {
      clearTimeout(t as any);
      clearInterval(t as any);
      this[name] = null;
    }
  }

  // ------------------------------------------------------------------ inbound
  private frame(link: Link, text: string): void {
    if (link !== this.link) return;
    this.lastReceived = Date.now();
    this.inbox = this.inbox.then(async () => {
      let msgs: any[];
      try {
        msgs = await unpack(JSON.parse(text));
      } catch {
        return;
      }
      for (const m of msgs) if (m && typeof m === "object") this.handle(m);
    });
  }

  /** Wait until every frame received so far is handled (tests). */
  drain(): Promise<void> {
    return Promise.all([this.inbox, this.outbox]).then(() => undefined);
  }

  private handle(msg: any): void {
    const data = msg.data ?? {};
    switch (msg.type) {
      case "welcome":
        return this.welcomed(data as WelcomeData);
      case "subscribed":
        return this.subscribed(data as SubscribedData);
      case "unsubscribed": {
        const r = this.rooms.get(data.room);
        if (data.reason !== "client") {
          if (r) r.wanted = r.subscribed = false;
          this.emit("evicted", data);
        }
        return;
      }
      case "pong":
        if (typeof data.timestamp === "number") {
          this.latency = Math.max(0, Date.now() - data.timestamp);
          this.emit("latency", this.latency);
        }
        return;
      case "error":
        return this.serverError(data as ErrorData);
      case "ack": {
        const out = this.pending.get(msg.ackId);
        if (out) {
          this.pending.delete(msg.ackId);
          if (out.timer) clearTimeout(out.timer);
          out.resolve(data as AckData);
        }
        return;
      }
      case "token_expiring":
        return void this.refresh();
      case "token_refreshed":
        return this.emit("token", data.expires_at);
      case "reconnect":
        this.hint = Math.max(0, Number(data.delay_ms) || 0);
        return;
    }
    if (typeof msg.room === "string") this.roomEvent(msg as RoomEvent);
  }

  private welcomed(w: WelcomeData): void {
    if (this.state !== "connecting") return;
    this.clearTimer("connectTimer");
    this.welcome = w;
    this.attempts = 0;
    this.authFailures = 0;
    if (this.transport === "websocket") this.wsFailures = 0;
    this.stats.connects++;
    this.setState("connected");
    const beat = (w.heartbeat_interval || 30) * 1000;
    const timeout = (w.heartbeat_timeout || 75) * 1000;
    this.heartbeat = setInterval(() => {
      // Nothing at all for twice the server's timeout: the link is dead without a close.
      if (Date.now() - this.lastReceived > 2 * timeout) this.link?.close(CloseCode.ABNORMAL, "heartbeat lost");
      else this.ping();
    }, beat);
    this.emit("connected", { gateway: w.gateway, transport: this.transport, welcome: w });
    const personal = new Set([`user-${w.user_id}`, `session-${w.session_id}`]);
    this.awaitingRooms = new Set();
    for (const [room, r] of this.rooms) {
      if (!r.wanted || personal.has(room)) continue;
      this.awaitingRooms.add(room);
      this.sendSubscribe(room, r);
    }
    this.checkResubscribed();
    for (const out of this.queue.splice(0)) this.sendOut(out);
    this.flush(); // recovery does not wait for the batch timer
  }

  private checkResubscribed(): void {
    if (!this.awaitingRooms || this.awaitingRooms.size) return;
    const ms = this.lostAt === null ? null : Date.now() - this.lostAt;
    this.lostAt = null;
    this.awaitingRooms = null;
    if (ms !== null) this.stats.lastRecoverMs = ms;
    this.emit("resubscribed", { ms, rooms: [...this.rooms.keys()].filter((k) => this.rooms.get(k)!.subscribed) });
  }

  private subscribed(data: SubscribedData): void {
    let r = this.rooms.get(data.room);
    if (!r && data.personal) r = this.entry(data.room);
    if (!r) return;
    r.subscribed = true;
    if ("recovered" in data) {
      this.emit("recovery", data);
      if (!r.tracker.subscribed(data)) this.emit("unrecovered", data);
    } else r.tracker.resyncing = false;
    if (this.awaitingRooms?.delete(data.room)) this.checkResubscribed();
  }

  private serverError(e: ErrorData): void {
    const out = e.ref_id ? this.pending.get(e.ref_id) : undefined;
    // `unavailable` and `rate_limited`: not accepted, so the ack timer resends it.
    if (out && e.code !== "unavailable" && e.code !== "rate_limited") {
      this.pending.delete(e.ref_id!);
      if (out.timer) clearTimeout(out.timer);
      out.reject(new ServerError(e));
    }
    if (e.room && (e.code === "permission_denied" || e.code === "invalid_room" || e.code === "too_many_subscriptions")) {
      const r = this.rooms.get(e.room);
      if (r) r.wanted = false;
      if (this.awaitingRooms?.delete(e.room)) this.checkResubscribed();
    }
    this.emit("error", e);
  }

  private roomEvent(msg: RoomEvent): void {
    let r = this.rooms.get(msg.room);
    if (!r && PERSONAL.test(msg.room)) r = this.entry(msg.room);
    if (!r) return;
    const verdict = r.tracker.accept(msg);
    const requiresAck = msg.metadata?.requiresAck === true;
    if (verdict === "duplicate") {
      this.stats.duplicates++;
      if (requiresAck && this.o.autoAck) this.ack(msg.id); // our earlier ack may be lost
      return;
    }
    if (verdict === "gap") {
      this.stats.resyncs++;
      this.emit("resync", { room: msg.room, offset: r.tracker.offset });
      this.sendSubscribe(msg.room, r); // `subscribe` with `since` on a joined room is a resync
      return;
    }
    if (verdict === "resyncing") return;
    const handlers = [...r.handlers, ...(PERSONAL.test(msg.room) ? this.personalHandlers : [])];
    const results: Promise<void>[] = [];
    for (const h of handlers) {
      try {
        const res = h(msg);
        if (res && typeof (res as Promise<void>).then === "function") results.push(res as Promise<void>);
      } catch (err) {
        setTimeout(() => {
          throw err;
        });
      }
    }
    this.emit("message", msg);
    if (requiresAck && this.o.autoAck) {
      if (results.length) void Promise.allSettled(results).then(() => this.ack(msg.id));
      else this.ack(msg.id);
    }
  }

  // ------------------------------------------------------------------ rooms
  private entry(room: string): RoomEntry {
    let r = this.rooms.get(room);
    if (!r) {
      r = { tracker: new RoomTracker(room), handlers: new Set(), wanted: false, subscribed: false };
      this.rooms.set(room, r);
    }
    return r;
  }

  /** Join `room` (now, or at the next connect) and call `handler` with each of its events, once each. */
  subscribe(room: string, handler?: Handler): Subscription {
    const r = this.entry(room);
    if (handler) r.handlers.add(handler);
    if (!r.wanted) {
      r.wanted = true;
      if (this.state === "connected" && !r.subscribed) this.sendSubscribe(room, r);
    }
    return { room, unsubscribe: () => this.unsubscribe(room, handler) };
  }

  /** Remove `handler` (or every handler); the room is left when none remains. */
  unsubscribe(room: string, handler?: Handler): void {
    const r = this.rooms.get(room);
    if (!r) return;
    if (handler) r.handlers.delete(handler);
    else r.handlers.clear();
    if (r.handlers.size) return;
    this.rooms.delete(room);
    if (r.wanted && r.subscribed && this.state === "connected" && !PERSONAL.test(room)) {
      this.enqueue({ type: "unsubscribe", data: { room } });
    }
  }

  /** Handlers of the personal rooms (`user-{id}`, `session-{id}`): the mailbox. */
  onPersonal(handler: Handler): () => void {
    this.personalHandlers.add(handler);
    return () => this.personalHandlers.delete(handler);
  }

  /** Rooms wanted and whether each is subscribed now. */
  subscriptions(): Record<string, boolean> {
    const out: Record<string, boolean> = {};
    for (const [room, r] of this.rooms) if (r.wanted || r.subscribed) out[room] = r.subscribed;
    return out;
  }

  /** The last offset and epoch seen in `room`. */
  position(room: string): { offset: number | null; epoch: string | null } | undefined {
    const t = this.rooms.get(room)?.tracker;
    return t && { offset: t.offset, epoch: t.epoch };
  }

  private sendSubscribe(room: string, r: RoomEntry): void {
    const since = r.tracker.since();
    this.enqueue({ type: "subscribe", data: since ? { room, since } : { room } });
  }

  // ------------------------------------------------------------------ outbound
  /** Acknowledge a `requiresAck` message (automatic unless `autoAck: false`). */
  ack(id: string): void {
    if (this.state === "connected") this.enqueue({ type: "ack", ackId: id });
  }

  /**
   * Publish an event into `room`. With `{ack: true}` the promise resolves with the gateway's
   * `ack` (in history and on the bus), after up to `ackRetries` resends with the same id, or
   * rejects (`AckTimeoutError`, `ServerError`). While disconnected it waits in a bounded queue.
   */
  publish(room: string, type: string, data: Record<string, unknown> = {}, opts: PublishOptions = {}): Promise<AckData | void> {
    const metadata: Record<string, unknown> = {};
    if (opts.priority) metadata.priority = opts.priority;
    if (opts.ttl !== undefined) metadata.ttl = opts.ttl;
    if (opts.correlationId) metadata.correlation_id = opts.correlationId;
    const msg: any = { type, room, data, id: opts.id ?? uuid() };
    if (opts.ack) msg.requiresAck = true;
    if (Object.keys(metadata).length) msg.metadata = metadata;
    return new Promise((resolve, reject) => {
      const max = this.welcome?.limits?.maxMessageBytes ?? 65536;
      if (utf8Length(JSON.stringify(msg)) > max) {
        return reject(new MessageTooBigError(`above maxMessageBytes (${max})`));
      }
      const out: Outgoing = { msg, ack: !!opts.ack, resolve, reject, tries: 0 };
      if (this.state === "connected") return this.sendOut(out);
      if (this.queue.length >= this.o.queueSize) {
        if (this.o.queueOverflow === "reject-new") return reject(new QueueFullError(`offline queue full (${this.o.queueSize})`));
        this.queue.shift()!.reject(new QueueFullError("dropped from the full offline queue"));
      }
      this.queue.push(out);
    });
  }

  /** Publishes waiting for a connection. */
  get queued(): number {
    return this.queue.length;
  }

  private sendOut(out: Outgoing): void {
    if (out.ack) {
      this.pending.set(out.msg.id!, out);
      out.timer = setTimeout(() => this.ackTimeout(out), this.o.ackTimeout);
    }
    this.enqueue(out.msg, out);
    if (!out.ack) out.resolve(undefined);
  }

  private ackTimeout(out: Outgoing): void {
    if (this.pending.get(out.msg.id!) !== out) return;
    if (out.tries >= this.o.ackRetries) {
      this.pending.delete(out.msg.id!);
      return out.reject(new AckTimeoutError(`no ack for ${out.msg.id} after ${out.tries} resends`));
    }
    out.tries++;
    this.pending.delete(out.msg.id!);
    this.sendOut(out);
  }

  /** Token refresh on `token_expiring`. */
  private async refresh(): Promise<void> {
    if (!this.o.getToken) return;
    try {
      const token = await this.o.getToken();
      this.write(JSON.stringify({ type: "refresh", token }), false);
    } catch {
      /* the gateway closes 4001 at expiry; the reconnect asks again */
    }
  }

  /** Send a `ping` now (also every `heartbeat_interval`). */
  ping(): void {
    this.flush();
    this.write(JSON.stringify({ type: "ping", timestamp: Date.now() }), false);
  }

  private enqueue(msg: ClientMessage, out?: Outgoing): void {
    const b = this.o.batch;
    if (b === false) {
      this.outBatch.push({ msg, out });
      return this.flush();
    }
    this.outBatch.push({ msg, out });
    if (this.outBatch.length >= (b?.size ?? 10)) this.flush();
    else if (this.batchTimer === null) this.batchTimer = setTimeout(() => this.flush(), b?.delay ?? 100);
  }

  /** Send what the batcher holds now: one message as is, several as one `batch`. */
  flush(): void {
    this.clearTimer("batchTimer");
    if (!this.outBatch.length || !this.link) return;
    const items = this.outBatch.splice(0);
    this.lastFrame = items.flatMap((i) => (i.out ? [i.out] : []));
    const frame = items.length === 1 ? items[0]!.msg : { type: "batch", messages: items.map((i) => i.msg) };
    this.write(JSON.stringify(frame), true);
  }

  private write(text: string, compressible: boolean): void {
    const link = this.link;
    if (!link) return;
    const big = compressible && canDeflate() && utf8Length(text) > this.o.compressThreshold;
    if (!big && !this.writing) return link.send(text);
    // In order behind an asynchronous compression.
    this.writing++;
    this.outbox = this.outbox
      .then(async () => {
        const out = big ? JSON.stringify({ type: "compressed", data: await deflate(text) }) : text;
        if (this.link === link) link.send(out);
      })
      .catch(() => {
        if (this.link === link) link.send(text);
      })
      .finally(() => {
        this.writing--;
      });
  }
}
