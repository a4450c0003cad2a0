// A headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) that the Python
// end-to-end tests steer over stdin/stdout, one JSON object per line:
//   -> {"id": 1, "cmd": "open", "url": "...", "blockWebSocket": false}
//   <- {"id": 1, "ok": true, "value": ...}     or {"id": 1, "ok": false, "error": "..."}
// Commands: open, eval {expr}, wait {expr, wait_ms}, click {selector}, screenshot {path},
// cdp {method, params}, logs, close. The tests own the stack (kill a gateway, publish) and the
// assertions; this file only drives the browser.
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const executablePath = process.env.ROOMGATE_CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
});
let page = null;
let cdp = null;
const logs = [];

// WebSockets blocked as by a proxy that does not pass Upgrade: every WebSocket fails with 1006.
const BLOCK_WS = () => {
  window.WebSocket = class BlockedWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      setTimeout(() => {
        this.readyState = 3;
        this.onerror?.(new Event("error"));
        this.onclose?.({ code: 1006, reason: "", wasClean: false });
      }, 20);
    }
    send() {
      throw new Error("blocked");
    }
    close() {}
  };
};

async function handle(msg) {
  switch (msg.cmd) {
    case "open": {
      const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
      page = await context.newPage();
      page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
      page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
      if (msg.blockWebSocket) await page.addInitScript(BLOCK_WS);
      cdp = await context.newCDPSession(page);
      await page.goto(msg.url);
      return true;
    }
    case "eval":
      return await page.evaluate(msg.expr);
    case "wait":
      await page.waitForFunction(msg.expr, null, { timeout: msg.wait_ms ?? 10000, polling: 100 });
      return await page.evaluate(msg.expr);
    case "click":
      await page.click(msg.selector, { timeout: msg.timeout ?? 5000 });
      return true;
    case "screenshot":
      await page.screenshot({ path: msg.path, fullPage: true });
      return msg.path;
    case "cdp":
      return await cdp.send(msg.method, msg.params ?? {});
    case "logs":
      return logs.splice(0);
    case "close":
      await browser.close();
      process.exit(0);
  }
  throw new Error(`unknown command ${msg.cmd}`);
}

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
out({ id: 0, ok: true, value: browser.version() });
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const msg = JSON.parse(line);
  try {
    out({ id: msg.id, ok: true, value: (await handle(msg)) ?? null });
  } catch (err) {
    out({ id: msg.id, ok: false, error: String(err && err.stack ? err.stack : err) });
  }
}
await browser.close();
