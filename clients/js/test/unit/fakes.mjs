// Fakes of the browser's WebSocket and EventSource: a test plays the gateway's side.
import { RoomgateClient } from "../../dist/index.js";

export class FakeWebSocket {
  static instances = [];
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.closed = null;
    FakeWebSocket.instances.push(this);
  }
  send(text) {
    if (this.closed) throw new Error("send on a closed socket");
    this.sent.push(text);
  }
  close(code = 1000, reason = "") {
    if (!this.closed) this.closed = { code, reason };
  }
  // the gateway's side
  open() {
    this.onopen?.({});
  }
  deliver(msg) {
    this.onmessage?.({ data: typeof msg === "string" ? msg : JSON.stringify(msg) });
  }
  drop(code = 1006, reason = "") {
    this.closed = { code, reason };
    this.onclose?.({ code, reason });
  }
  /** Every client message sent, `batch` frames unpacked (not `compressed`). */
  messages() {
    return this.sent.flatMap((t) => {
      const m = JSON.parse(t);
      return m.type === "batch" ? m.messages : [m];
    });
  }
}

export class FakeEventSource {
  static instances = [];
  constructor(url) {
    this.url = url;
    this.listeners = {};
    this.closed = false;
    FakeEventSource.instances.push(this);
  }
  addEventListener(name, f) {
    (this.listeners[name] ??= []).push(f);
  }
  close() {
    this.closed = true;
  }
  event(name, data) {
    for (const f of this.listeners[name] ?? []) f({ data: JSON.stringify(data) });
  }
  deliver(msg) {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }
}

export function welcome(extra = {}) {
  return {
    id: "w1",
    type: "welcome",
    timestamp: "2026-01-01T00:00:00.000Z",
    sender: "gateway",
    data: {
      user_id: "42",
      session_id: "s1",
      kind: "user",
      heartbeat_interval: 30,
      heartbeat_timeout: 75,
      gateway: "gw-1",
      limits: { maxMessageBytes: 65536 },
      ...extra,
    },
    metadata: { priority: "high" },
  };
}

let seq = 0;
export function event(room, offset, epoch = "e1", extra = {}) {
  return {
    id: `m-${room}-${epoch}-${offset}-${seq++}`,
    type: "metrics_update",
    timestamp: "2026-01-01T00:00:00.000Z",
    sender: "test",
    room,
    data: { n: offset },
    metadata: { offset, epoch, ...extra },
  };
}

/** Let promise chains (the client's inbox and outbox) run. */
export async function settle(rounds = 10) {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

export function makeClient(options = {}) {
  FakeWebSocket.instances = [];
  FakeEventSource.instances = [];
  const client = new RoomgateClient({
    url: "ws://gw.test/ws",
    token: "T0",
    WebSocket: FakeWebSocket,
    EventSource: FakeEventSource,
    compress: false,
    random: () => 0.5,
    window: { addEventListener() {}, removeEventListener() {} },
    document: { addEventListener() {}, removeEventListener() {} },
    ...options,
  });
  const states = [];
  client.on("state", (s) => states.push(s));
  return { client, states, ws: () => FakeWebSocket.instances.at(-1) };
}

/** Connect and bring the client to `connected` on a fake socket. */
export async function connected(client, ws, extra = {}) {
  client.connect();
  await settle();
  const sock = ws();
  sock.open();
  sock.deliver(welcome(extra));
  await settle();
  return sock;
}
