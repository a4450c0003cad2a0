// Pure parts: backoff bounds, dedupe and gap logic, RoomSet.
import assert from "node:assert/strict";
import { test } from "node:test";
import { backoffCeiling, backoffDelay, penaltyDelay, RoomTracker, RoomSet } from "../../dist/index.js";
import { event } from "./fakes.mjs";

test("backoff ceilings grow 1 s × 1.5ⁿ and cap at 30 s", () => {
  assert.deepEqual([0, 1, 2, 3].map((n) => backoffCeiling(n)), [1000, 1500, 2250, 3375]);
  assert.equal(backoffCeiling(9), Math.min(30000, 1000 * 1.5 ** 9));
  assert.equal(backoffCeiling(20), 30000);
  assert.equal(backoffCeiling(1000), 30000);
});

test("full jitter stays in [0, ceiling)", () => {
  for (const r of [0, 0.25, 0.999999]) {
    for (let n = 0; n < 30; n++) {
      const d = backoffDelay(n, () => r);
      assert.ok(d >= 0 && d < backoffCeiling(n), `${n}: ${d}`);
    }
  }
  assert.equal(backoffDelay(0, () => 0), 0);
});

test("4029/4030 penalty is in [15 s, 30 s)", () => {
  assert.equal(penaltyDelay(() => 0), 15000);
  assert.ok(penaltyDelay(() => 0.999) < 30000);
});

test("tracker delivers new messages and drops duplicates by id", () => {
  const t = new RoomTracker("system");
  const m = event("system", 1);
  assert.equal(t.accept(m), "deliver");
  assert.equal(t.accept(m), "duplicate");
  assert.deepEqual(t.since(), { offset: 1, epoch: "e1" });
});

test("an offset jump within an epoch is a gap; the resync drops live messages until subscribed", () => {
  const t = new RoomTracker("system");
  assert.equal(t.accept(event("system", 1)), "deliver");
  assert.equal(t.accept(event("system", 2)), "deliver");
  assert.equal(t.accept(event("system", 4)), "gap");
  assert.deepEqual(t.since(), { offset: 2, epoch: "e1" }); // resync from the last one seen
  assert.equal(t.accept(event("system", 5)), "resyncing");
  t.subscribed({ room: "system", recovered: true, epoch: "e1", replayed: 3 });
  assert.equal(t.accept(event("system", 3)), "deliver");
});

test("a new epoch is no gap; recovered:false forgets the offsets", () => {
  const t = new RoomTracker("tasks");
  t.accept(event("tasks", 10, "e1"));
  assert.equal(t.accept(event("tasks", 50, "e2")), "deliver");
  assert.equal(t.subscribed({ room: "tasks", recovered: false, epoch: "e3", missed: 7 }), false);
  assert.equal(t.since(), undefined);
  assert.equal(t.accept(event("tasks", 99, "e3")), "deliver"); // no gap against forgotten offsets
});

test("the dedupe memory is bounded", () => {
  const t = new RoomTracker("system", 3);
  const ms = [1, 2, 3, 4].map((n) => event("system", n));
  for (const m of ms) t.accept(m);
  assert.equal(t.accept(ms[3]), "duplicate");
  assert.equal(t.accept(ms[0]), "deliver"); // forgotten: the oldest went first
});

test("RoomSet swaps subscriptions on navigation and keeps shared rooms", () => {
  const calls = [];
  const fake = {
    subscribe(room) {
      calls.push(`+${room}`);
      return { room, unsubscribe: () => calls.push(`-${room}`) };
    },
  };
  const set = new RoomSet(fake, () => {}, {
    dashboard: () => ["system", "alerts", "agents"],
    agent: (id) => ["alerts", `agent-${id}`],
  });
  set.page("dashboard");
  set.page("agent", "7");
  assert.deepEqual(calls, ["+system", "+alerts", "+agents", "-system", "-agents", "+agent-7"]);
  assert.deepEqual(set.rooms.sort(), ["agent-7", "alerts"]);
  assert.throws(() => set.page("nope"));
});
