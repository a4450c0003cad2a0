/** A tiny typed event emitter. */
export class Emitter<E extends { [K in keyof E]: (...args: any[]) => void }> {
  private handlers: { [K in keyof E]?: Set<E[K]> } = {};

  /** Listen; returns a function that stops listening. */
  on<K extends keyof E>(event: K, handler: E[K]): () => void {
    (this.handlers[event] ??= new Set()).add(handler);
    return () => this.off(event, handler);
  }

  off<K extends keyof E>(event: K, handler: E[K]): void {
    this.handlers[event]?.delete(handler);
  }

  protected emit<K extends keyof E>(event: K, ...args: Parameters<E[K]>): void {
    for (const h of [...(this.handlers[event] ?? [])]) {
      try {
        h(...args);
      } catch (err) {
        // A listener's bug must not break the connection.
        setTimeout(() => {
          throw err;
        });
      }
    }
  }
}
