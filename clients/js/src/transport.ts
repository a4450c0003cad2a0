/**
 * The two links the client speaks the protocol over: a WebSocket (`/ws`) and the HTTP fallback
 * (`GET /sse` stream + `POST /sse/{session}`). Both hand the client text frames and one close
 * with a code of the close-code table; a stream that ends without `event: close` is 1006.
 */

export interface LinkHandlers {
  /** The link can carry messages (WebSocket open / SSE `session` event). */
  open(): void;
  frame(text: string): void;
  /** Called once. */
  close(code: number, reason: string): void;
}

export interface Link {
  readonly kind: "websocket" | "sse";
  send(text: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketCtor = new (url: string) => any;
export type EventSourceCtor = new (url: string, init?: any) => any;
export type FetchFn = (url: string, init?: any) => Promise<{ status: number }>;

export function openWebSocket(Ctor: WebSocketCtor, url: string, h: LinkHandlers): Link {
  const ws = new Ctor(url);
  let done = false;
  const finish = (code: number, reason: string) => {
    if (done) return;
    done = true;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    h.close(code, reason);
  };
  ws.onopen = () => h.open();
  ws.onmessage = (e: { data: unknown }) => {
    if (typeof e.data === "string") h.frame(e.data);
  };
  ws.onclose = (e: { code: number; reason: string }) => finish(e.code || 1006, e.reason || "");
  ws.onerror = () => {
    /* a close event follows */
  };
  return {
    kind: "websocket",
    send: (text) => ws.send(text),
    close: (code = 1000, reason = "") => {
      try {
        ws.close(code, reason);
      } catch {
        ws.close();
      }
      finish(code, reason);
    },
  };
}

export function openSse(ES: EventSourceCtor, fetchFn: FetchFn, url: string, h: LinkHandlers): Link {
  const es = new ES(url, { withCredentials: false });
  let done = false;
  let post: string | null = null;
  let secret = "";
  let chain: Promise<void> = Promise.resolve();
  const finish = (code: number, reason: string) => {
    if (done) return;
    done = true;
    es.close();
    h.close(code, reason);
  };
  es.addEventListener("session", (e: { data: string }) => {
    const s = JSON.parse(e.data);
    post = new URL(s.post, new URL(url, (globalThis as any).location?.href)).toString();
    secret = s.secret;
    h.open();
  });
  es.addEventListener("close", (e: { data: string }) => {
    let code = 1006;
    let reason = "";
    try {
      ({ code, reason } = JSON.parse(e.data));
    } catch {
      /* a broken close event is an abnormal closure */
    }
    finish(code, reason);
  });
  es.onmessage = (e: { data: string }) => h.frame(e.data);
  // EventSource would reopen the URL by itself: the client reconnects under its own control.
  es.onerror = () => finish(1006, "stream ended");
  const postOne = async (text: string): Promise<void> => {
    for (let tries = 0; tries < 5 && !done; tries++) {
      let status: number;
      try {
        status = (
          await fetchFn(post!, {
            method: "POST",
            headers: { "Content-Type": "application/json", "X-Roomgate-Session-Secret": secret },
            body: text,
            credentials: "same-origin",
          })
        ).status;
      } catch {
        return finish(1006, "post failed");
      }
      if (status === 202) return;
      if (status === 413) return finish(1009, "Message too big");
      if (status !== 429) return finish(1006, `post ${status}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  };
  return {
    kind: "sse",
    // One POST after another: the gateway handles messages in the order it receives them.
    send: (text) => {
      chain = chain.then(() => postOne(text));
    },
    close: (code = 1000, reason = "") => finish(code, reason),
  };
}
