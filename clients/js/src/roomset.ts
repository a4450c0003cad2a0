/**
 * RoomSet: the rooms one page needs (the protocol document's `subscribeForPage`). `set()`
 * joins what is new and leaves what is gone, so navigation swaps subscriptions without
 * dropping the rooms two pages share.
 */
import type { Handler, RoomgateClient, Subscription } from "./client.js";

export class RoomSet {
  private readonly subs = new Map<string, Subscription>();

  constructor(
    private readonly client: RoomgateClient,
    private readonly handler: Handler,
    private readonly pages: Record<string, (...args: string[]) => string[]> = {},
  ) {}

  /** Exactly these rooms from now on. */
  set(rooms: Iterable<string>): void {
    const next = new Set(rooms);
    for (const [room, sub] of this.subs) {
      if (!next.has(room)) {
        sub.unsubscribe();
        this.subs.delete(room);
      }
    }
    for (const room of next) if (!this.subs.has(room)) this.subs.set(room, this.client.subscribe(room, this.handler));
  }

  /** The rooms of a named page, e.g. `page("agent-detail", "123")`. */
  page(name: string, ...args: string[]): void {
    const rooms = this.pages[name];
    if (!rooms) throw new Error(`roomgate: unknown page ${name}`);
    this.set(rooms(...args));
  }

  get rooms(): string[] {
    return [...this.subs.keys()];
  }

  clear(): void {
    this.set([]);
  }
}
