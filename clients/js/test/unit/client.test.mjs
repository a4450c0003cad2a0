// RoomgateClient against fake sockets with fake timers: the state machine, auth, reconnect,
// heartbeat, rooms, acks, reliable publish, batching, compression, SSE fallback.
import assert from "node:assert/strict";
import { afterEach, beforeEach, mock, test } from "node:test";
import { inflateSync, deflateSync } from "node:zlib";
import { AckTimeoutError, MessageTooBigError, QueueFullError, ServerError } from "../../dist/index.js";
import { connected, event, FakeEventSource, FakeWebSocket, makeClient, settle, welcome } from "./fakes.mjs";

beforeEach(() => mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"], now: 1_000_000 }));
afterEach(() => mock.timers.reset());

const tick = async (ms) => {
  await settle();
  mock.timers.tick(ms);
  await settle();
};

test("states: disconnected → connecting → connected; the token goes in a first auth message", async () => {
  const { client, states, ws } = makeClient();
  assert.equal(client.state, "disconnected");
  const sock = await connected(client, ws);
  assert.deepEqual(states, ["connecting", "connected"]);
  assert.equal(new URL(sock.url).searchParams.get("token"), null); // not in the URL
  assert.deepEqual(JSON.parse(sock.sent[0]), { type: "auth", token: "T0" });
  client.disconnect();
  assert.equal(client.state, "disconnected");
});

test("tokenInQuery puts the token in ?token= and sends no auth message", async () => {
  const { client, ws } = makeClient({ tokenInQuery: true });
  const sock = await connected(client, ws);
  assert.equal(new URL(sock.url).searchParams.get("token"), "T0");
  assert.equal(sock.sent.length, 0);
});

test("reconnect: backoff with jitter, resubscribe with since, attempts reset after welcome", async () => {
  const { client, states, ws } = makeClient();
  const got = [];
  client.subscribe("system", (m) => got.push(m.data.n));
  const first = await connected(client, ws);
  await tick(100); // the batch timer
  assert.deepEqual(first.messages().at(-1), { type: "subscribe", data: { room: "system" } });
  first.deliver({ type: "subscribed", data: { room: "system" } });
  first.deliver(event("system", 1));
  first.deliver(event("system", 2));
  await settle();
  first.drop(1006);
  assert.equal(client.state, "reconnecting");
  await tick(499); // random 0.5 × 1000 ms
  assert.equal(FakeWebSocket.instances.length, 1);
  await tick(1);
  assert.equal(FakeWebSocket.instances.length, 2);
  const second = ws();
  second.open();
  second.deliver(welcome({ gateway: "gw-2" }));
  await tick(100);
  assert.deepEqual(second.messages().at(-1), {
    type: "subscribe",
    data: { room: "system", since: { offset: 2, epoch: "e1" } },
  });
  assert.deepEqual(got, [1, 2]);
  assert.deepEqual(states, ["connecting", "connected", "reconnecting", "connecting", "connected"]);
});

test("backoff grows while connects fail, and max attempts ends in failed", async () => {
  const { client, ws } = makeClient({ reconnect: { maxAttempts: 3 }, transports: ["websocket"] });
  const failed = [];
  client.on("failed", (r) => failed.push(r));
  client.connect();
  await settle();
  const delays = [];
  for (let i = 0; i < 3; i++) {
    const before = FakeWebSocket.instances.length;
    ws().drop(1006);
    let waited = 0;
    while (FakeWebSocket.instances.length === before) {
      await tick(50);
      waited += 50;
    }
    delays.push(waited);
  }
  assert.deepEqual(delays, [500, 750, 1150]); // 0.5 × 1000, 1500, 2250 (in 50 ms steps)
  ws().drop(1006);
  assert.equal(client.state, "failed");
  assert.equal(failed.length, 1);
});

test("the server's reconnect hint (delay_ms) sets the next delay", async () => {
  const { client, ws } = makeClient();
  const sock = await connected(client, ws);
  sock.deliver({ type: "reconnect", data: { delay_ms: 3000, reason: "draining" } });
  await settle();
  sock.drop(1012, "Service restart");
  await tick(2999);
  assert.equal(FakeWebSocket.instances.length, 1);
  await tick(1);
  assert.equal(FakeWebSocket.instances.length, 2);
});

test("4029/4030 back off for at least half the cap", async () => {
  const { client, ws } = makeClient();
  const sock = await connected(client, ws);
  sock.drop(4030, "Rate limit exceeded");
  await tick(22499); // 15000 + 0.5 × 15000
  assert.equal(FakeWebSocket.instances.length, 1);
  await tick(1);
  assert.equal(FakeWebSocket.instances.length, 2);
});

test("4001: getToken gives a new token and the client reconnects at once; a static token fails", async () => {
  let n = 0;
  const { client, ws } = makeClient({ token: undefined, getToken: async () => `T${++n}` });
  const sock = await connected(client, ws);
  assert.equal(JSON.parse(sock.sent[0]).token, "T1");
  sock.drop(4001, "Unauthorized");
  await tick(0);
  const again = ws();
  assert.notEqual(again, sock);
  again.open();
  assert.equal(JSON.parse(again.sent[0]).token, "T2");

  const fixed = makeClient();
  const s2 = await connected(fixed.client, fixed.ws);
  s2.drop(4001);
  assert.equal(fixed.client.state, "failed");
});

test("token_expiring: a new token from getToken goes out as refresh", async () => {
  let n = 0;
  const { client, ws } = makeClient({ token: undefined, getToken: () => `T${++n}` });
  const sock = await connected(client, ws);
  sock.deliver({ type: "token_expiring", data: { expires_at: 1, seconds_left: 60 } });
  await settle();
  assert.deepEqual(JSON.parse(sock.sent.at(-1)), { type: "refresh", token: "T2" });
});

test("heartbeat: ping every heartbeat_interval from welcome; pong gives latency", async () => {
  const { client, ws } = makeClient();
  const lat = [];
  client.on("latency", (ms) => lat.push(ms));
  const sock = await connected(client, ws, { heartbeat_interval: 5 });
  await tick(4999);
  assert.equal(sock.messages().filter((m) => m.type === "ping").length, 0);
  await tick(1);
  const ping = sock.messages().find((m) => m.type === "ping");
  assert.ok(ping);
  await tick(42);
  sock.deliver({ type: "pong", data: { timestamp: ping.timestamp, server_time: 1 } });
  await settle();
  assert.deepEqual(lat, [42]);
  await tick(5000);
  assert.equal(sock.messages().filter((m) => m.type === "ping").length, 2);
});

test("offset jump → resync with since; recovered:false → unrecovered event", async () => {
  const { client, ws } = makeClient();
  const got = [];
  const events = [];
  client.subscribe("tasks", (m) => got.push(m.metadata.offset));
  client.on("resync", (e) => events.push(["resync", e.offset]));
  client.on("unrecovered", (d) => events.push(["unrecovered", d.missed]));
  const sock = await connected(client, ws);
  sock.deliver({ type: "subscribed", data: { room: "tasks" } });
  sock.deliver(event("tasks", 1));
  sock.deliver(event("tasks", 3)); // 2 was lost
  sock.deliver(event("tasks", 4)); // dropped: the resync replays it
  await tick(100);
  assert.deepEqual(sock.messages().at(-1), { type: "subscribe", data: { room: "tasks", since: { offset: 1, epoch: "e1" } } });
  sock.deliver({ type: "subscribed", data: { room: "tasks", recovered: true, epoch: "e1", replayed: 3 } });
  for (const n of [2, 3, 4]) sock.deliver(event("tasks", n));
  sock.deliver({ type: "subscribed", data: { room: "tasks", recovered: false, epoch: "e9", missed: 12 } });
  await settle();
  assert.deepEqual(got, [1, 2, 3, 4]);
  assert.deepEqual(events, [["resync", 1], ["unrecovered", 12]]);
});

test("duplicates by id are dropped; requiresAck is acked after the (async) handler, duplicates acked again", async () => {
  const { client, ws } = makeClient({ batch: false });
  let release;
  const handled = [];
  client.onPersonal(async (m) => {
    await new Promise((r) => (release = r));
    handled.push(m.id);
  });
  const sock = await connected(client, ws);
  sock.deliver({ type: "subscribed", data: { room: "user-42", personal: true, mailbox: 1 } });
  const m = event("user-42", 1, "e1", { requiresAck: true });
  sock.deliver(m);
  await settle();
  assert.equal(sock.messages().filter((x) => x.type === "ack").length, 0); // handler still running
  release();
  await settle();
  assert.deepEqual(sock.messages().filter((x) => x.type === "ack"), [{ type: "ack", ackId: m.id }]);
  sock.deliver(m); // a resend: our ack was lost
  await settle();
  assert.equal(handled.length, 1);
  assert.equal(sock.messages().filter((x) => x.type === "ack").length, 2);
});

test("autoAck: false leaves acks to the app", async () => {
  const { client, ws } = makeClient({ autoAck: false, batch: false });
  const sock = await connected(client, ws);
  sock.deliver(event("user-42", 1, "e1", { requiresAck: true }));
  await settle();
  assert.equal(sock.messages().filter((x) => x.type === "ack").length, 0);
});

test("outgoing batch: 10 messages at once, or what there is after 100 ms; one alone goes as is", async () => {
  const { client, ws } = makeClient({ compressThreshold: 1e9 });
  const sock = await connected(client, ws);
  const base = sock.sent.length;
  for (let i = 0; i < 10; i++) client.publish("system", "metrics_update", { i });
  await settle();
  assert.equal(sock.sent.length, base + 1);
  const frame = JSON.parse(sock.sent.at(-1));
  assert.equal(frame.type, "batch");
  assert.equal(frame.messages.length, 10);
  client.publish("system", "metrics_update", { i: 10 });
  client.publish("system", "metrics_update", { i: 11 });
  await tick(99);
  assert.equal(sock.sent.length, base + 1);
  await tick(1);
  assert.equal(JSON.parse(sock.sent.at(-1)).messages.length, 2);
  client.publish("system", "metrics_update", { i: 12 });
  await tick(100);
  assert.equal(JSON.parse(sock.sent.at(-1)).type, "metrics_update");
});

test("reliable publish: resolved by the ack; resent 3 times with the same id, then AckTimeoutError", async () => {
  const { client, ws } = makeClient({ batch: false });
  const sock = await connected(client, ws);
  const p = client.publish("alerts", "alert_acknowledged", { alert_id: "a1" }, { ack: true });
  await settle();
  const sent = sock.messages().at(-1);
  assert.equal(sent.requiresAck, true);
  sock.deliver({ type: "ack", ackId: sent.id, data: { id: "env-1", room: "alerts", alert_id: "a1", changed: true } });
  assert.deepEqual(await p, { id: "env-1", room: "alerts", alert_id: "a1", changed: true });

  const q = client.publish("alerts", "alert_resolved", { alert_id: "a2" }, { ack: true });
  const rejected = assert.rejects(q, AckTimeoutError);
  for (let i = 0; i < 4; i++) await tick(5000);
  await rejected;
  const copies = sock.messages().filter((m) => m.type === "alert_resolved");
  assert.equal(copies.length, 4); // the first send and 3 resends
  assert.equal(new Set(copies.map((m) => m.id)).size, 1);
});

test("a server error for a publish rejects it with ServerError", async () => {
  const { client, ws } = makeClient({ batch: false });
  const sock = await connected(client, ws);
  const p = client.publish("alerts", "alert_resolved", { alert_id: "zz" }, { ack: true });
  await settle();
  const id = sock.messages().at(-1).id;
  sock.deliver({ type: "error", data: { code: "not_found", message: "no such alert", ref_id: id } });
  await assert.rejects(p, (e) => e instanceof ServerError && e.code === "not_found");
});

test("offline queue: publishes wait, go out after welcome with the same id; overflow rejects the new one", async () => {
  const { client, ws } = makeClient({ queueSize: 2, batch: false });
  const sock = await connected(client, ws);
  const inflight = client.publish("system", "metrics_update", { n: 0 }, { ack: true });
  await settle();
  const id = sock.messages().at(-1).id;
  sock.drop(1006);
  const a = client.publish("system", "metrics_update", { n: 1 });
  await assert.rejects(client.publish("system", "metrics_update", { n: 2 }), QueueFullError); // in-flight one + a
  assert.equal(client.queued, 2);
  await tick(500);
  const next = ws();
  next.open();
  next.deliver(welcome());
  await settle();
  await a;
  const resent = next.messages().filter((m) => m.type === "metrics_update");
  assert.deepEqual(resent.map((m) => m.data.n), [0, 1]);
  assert.equal(resent[0].id, id);
  next.deliver({ type: "ack", ackId: id, data: { id, room: "system" } });
  await inflight;
});

test("drop-oldest overflow rejects the oldest queued publish instead", async () => {
  const { client } = makeClient({ queueSize: 1, queueOverflow: "drop-oldest" });
  const first = client.publish("system", "metrics_update", { n: 1 });
  client.publish("system", "metrics_update", { n: 2 });
  await assert.rejects(first, QueueFullError);
  assert.equal(client.queued, 1);
});

test("1009: what was last sent is never resent; too big is refused before sending", async () => {
  const { client, ws } = makeClient({ batch: false });
  const sock = await connected(client, ws, { limits: { maxMessageBytes: 2000 } });
  await assert.rejects(client.publish("system", "metrics_update", { big: "x".repeat(3000) }), MessageTooBigError);
  const p = client.publish("system", "metrics_update", { n: 1 }, { ack: true });
  await settle();
  sock.drop(1009, "Message too big");
  await assert.rejects(p, MessageTooBigError);
  assert.equal(client.queued, 0);
});

test("incoming batch and compressed (zlib) frames are unpacked in order", async () => {
  const { client, ws } = makeClient();
  const got = [];
  client.subscribe("system", (m) => got.push(m.metadata.offset));
  const sock = await connected(client, ws);
  const z = (m) => ({ type: "compressed", data: deflateSync(JSON.stringify(m)).toString("base64") });
  sock.deliver(z(event("system", 1)));
  sock.deliver({ type: "batch", messages: [event("system", 2), event("system", 3)] });
  sock.deliver(z({ type: "batch", messages: [event("system", 4)] }));
  await client.drain();
  await settle();
  assert.deepEqual(got, [1, 2, 3, 4]);
});

test("outgoing frames above 1 KiB are sent compressed (zlib, base64)", async () => {
  const { client, ws } = makeClient({ batch: false });
  const sock = await connected(client, ws);
  client.publish("system", "metrics_update", { blob: "y".repeat(2000) });
  client.publish("system", "metrics_update", { small: 1 }); // stays behind the compressed one
  await client.drain();
  await settle();
  const [big, small] = sock.sent.slice(-2).map((t) => JSON.parse(t));
  assert.equal(big.type, "compressed");
  assert.equal(JSON.parse(inflateSync(Buffer.from(big.data, "base64")).toString()).data.blob.length, 2000);
  assert.equal(small.type, "metrics_update");
});

test("WebSocket blocked → SSE fallback with the same API; a WebSocket probe switches back", async () => {
  const posts = [];
  const fetch = async (url, init) => {
    posts.push({ url, secret: init.headers["X-Roomgate-Session-Secret"], body: JSON.parse(init.body) });
    return { status: 202 };
  };
  const { client, ws } = makeClient({ fetch, upgradeInterval: 60000 });
  const kinds = [];
  client.on("transport", (k) => kinds.push(k));
  client.subscribe("system");
  client.connect();
  await settle();
  ws().drop(1006); // never opened
  await tick(500);
  ws().drop(1006); // twice: blocked
  await tick(0);
  assert.equal(client.transport, "sse");
  const es = FakeEventSource.instances.at(-1);
  assert.equal(new URL(es.url).pathname, "/sse");
  es.event("session", { session_id: "S", secret: "K", post: "/sse/S" });
  await settle();
  es.deliver(welcome());
  await tick(100);
  assert.equal(client.state, "connected");
  assert.deepEqual(posts.map((p) => [p.url, p.secret, p.body.type]), [
    ["ws://gw.test/sse/S", "K", "auth"],
    ["ws://gw.test/sse/S", "K", "subscribe"],
  ].map(([u, k, t]) => [u.replace("ws:", "http:"), k, t]));
  // 60 s later a probe WebSocket opens: back to WebSocket, recovering with since
  await tick(60000);
  const probe = ws();
  probe.open();
  await settle();
  assert.equal(client.transport, "websocket");
  assert.ok(es.closed);
  await tick(0);
  assert.equal(new URL(ws().url).pathname, "/ws");
  assert.deepEqual(kinds, ["sse", "websocket"]);
});

test("SSE close event carries the close code", async () => {
  const fetch = async () => ({ status: 202 });
  const { client } = makeClient({ fetch, transports: ["sse"], tokenInQuery: true });
  const closes = [];
  client.on("disconnected", (d) => closes.push(d.code));
  client.connect();
  await settle();
  const es = FakeEventSource.instances.at(-1);
  assert.equal(new URL(es.url).searchParams.get("token"), "T0");
  es.event("session", { session_id: "S", secret: "K", post: "/sse/S" });
  es.deliver(welcome());
  await settle();
  es.event("close", { code: 4008, reason: "Heartbeat timeout" });
  assert.deepEqual(closes, [4008]);
  assert.ok(es.closed);
  assert.equal(client.state, "reconnecting");
});

test("every transition outside the state table throws (guarded)", async () => {
  const { client } = makeClient();
  assert.throws(() => client["setState"]("connected"), /disconnected -> connected/);
});

function fakeTarget(extra = {}) {
  const handlers = {};
  return {
    ...extra,
    addEventListener: (t, f) => (handlers[t] ??= []).push(f),
    removeEventListener: (t, f) => (handlers[t] = (handlers[t] ?? []).filter((g) => g !== f)),
    fire: (t) => (handlers[t] ?? []).forEach((f) => f()),
  };
}

test("offline: no attempt while the browser is offline; online reconnects at once", async () => {
  const win = fakeTarget({ navigator: { onLine: true } });
  const { client, ws } = makeClient({ window: win });
  const sock = await connected(client, ws);
  win.navigator.onLine = false;
  sock.drop(1006);
  await tick(60000);
  assert.equal(FakeWebSocket.instances.length, 1); // nothing while offline
  assert.equal(client.state, "reconnecting");
  win.navigator.onLine = true;
  win.fire("online");
  await settle();
  assert.equal(FakeWebSocket.instances.length, 2);
});

test("visibility: a tab coming back reconnects at once, or pings when connected", async () => {
  const doc = fakeTarget({ visibilityState: "visible" });
  const { client, ws } = makeClient({ document: doc, reconnect: { initialDelay: 20000 } });
  const sock = await connected(client, ws);
  doc.fire("visibilitychange");
  assert.equal(sock.messages().filter((m) => m.type === "ping").length, 1);
  sock.drop(1013, "Try again later");
  assert.equal(client.state, "reconnecting");
  doc.visibilityState = "hidden";
  doc.fire("visibilitychange");
  await settle();
  assert.equal(FakeWebSocket.instances.length, 1);
  doc.visibilityState = "visible";
  doc.fire("visibilitychange");
  await settle();
  assert.equal(FakeWebSocket.instances.length, 2); // without waiting for the 10 s backoff
});

test("evicted: an ACL change removes the room and says why; resubscribed reports the recovery time", async () => {
  const { client, ws } = makeClient();
  const events = [];
  client.on("evicted", (d) => events.push(d.reason));
  client.on("resubscribed", (d) => events.push(d.ms));
  client.subscribe("agent-7");
  const sock = await connected(client, ws);
  assert.deepEqual(events, []);
  sock.deliver({ type: "subscribed", data: { room: "agent-7" } });
  await settle();
  sock.drop(1006);
  await tick(500);
  const next = ws();
  next.open();
  next.deliver(welcome());
  await tick(100);
  await tick(250);
  next.deliver({ type: "subscribed", data: { room: "agent-7" } });
  await settle();
  next.deliver({ type: "unsubscribed", data: { room: "agent-7", reason: "not_in_agent_group" } });
  await settle();
  assert.deepEqual(events, [null, 850, "not_in_agent_group"]);
  assert.deepEqual(client.subscriptions(), {});
});
