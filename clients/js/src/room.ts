/**
 * Per-room delivery bookkeeping without I/O: last offset and epoch seen, dedupe by id, gap
 * detection, recovery outcome. The client feeds it every room event and `subscribed` answer and
 * does what it says.
 */
import type { RoomEvent, SubscribedData } from "./types.js";

export type Verdict =
  /** New: hand it to the handlers. */
  | "deliver"
  /** Seen before (a replay or an acked-delivery resend): drop it (but ack it again). */
  | "duplicate"
  /** Offsets jumped within the epoch: resubscribe with `since` and drop it (the replay has it). */
  | "gap"
  /** A resync is under way: the replay will carry it. */
  | "resyncing";

export class RoomTracker {
  offset: number | null = null;
  epoch: string | null = null;
  resyncing = false;
  private readonly seen = new Set<string>();

  constructor(
    readonly room: string,
    private readonly memory = 2000,
  ) {}

  /** The `since` to subscribe with, when there is one. */
  since(): { offset: number; epoch: string } | undefined {
    return this.offset !== null && this.epoch ? { offset: this.offset, epoch: this.epoch } : undefined;
  }

  /** What to do with one room event. */
  accept(msg: RoomEvent): Verdict {
    if (this.seen.has(msg.id)) return "duplicate";
    if (this.resyncing) return "resyncing";
    const offset = msg.metadata?.offset;
    const epoch = msg.metadata?.epoch ?? null;
    if (typeof offset === "number" && this.offset !== null && epoch === this.epoch && offset > this.offset + 1) {
      this.resyncing = true;
      return "gap";
    }
    this.remember(msg.id);
    if (typeof offset === "number") {
      if (epoch !== this.epoch || this.offset === null || offset > this.offset) this.offset = offset;
      this.epoch = epoch;
    }
    return "deliver";
  }

  /** A `subscribed` answer; returns false when history could not cover the gap (`recovered: false`). */
  subscribed(data: SubscribedData): boolean {
    this.resyncing = false;
    if (data.recovered === false) {
      // Offsets from before cannot be trusted: start over from what comes next.
      this.offset = null;
      this.epoch = data.epoch ?? null;
      return false;
    }
    return true;
  }

  private remember(id: string): void {
    this.seen.add(id);
    if (this.seen.size > this.memory) {
      const oldest = this.seen.values().next().value as string;
      this.seen.delete(oldest);
    }
  }
}
