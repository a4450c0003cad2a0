// The operations console the gateway serves at /console: agents, tasks, alerts and the system
// feed, live over @roomgate/client. Login by a token in the URL fragment (#token=…, never sent
// to a server) or pasted into the form; it is kept in sessionStorage for this tab only.
import { RoomgateClient, RoomSet, ServerError, type RoomEvent } from "../src/index.js";

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const KEY = "roomgate-token";
const ROOMS = ["agents", "tasks", "alerts", "system"];

interface Agent {
  id: string;
  hostname: string;
  status: string;
  cpu: number[];
  mem: number[];
  disk: number[];
  last: string;
}
interface Task {
  id: string;
  name: string;
  agent: string;
  progress: number;
  state: string;
  logs: string[];
}
interface Alert {
  id: string;
  title: string;
  severity: string;
  state: string;
  by?: string;
  at: string;
  agent?: string;
}

const agents = new Map<string, Agent>();
const tasks = new Map<string, Task>();
const alerts = new Map<string, Alert>();
/** Every room event handed to the console, by room, in order (what the e2e tests check). */
const seen: Record<string, string[]> = {};
let dirty = false;

function takeToken(): string | null {
  const m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(KEY, decodeURIComponent(m[1]!));
    history.replaceState(null, "", location.pathname + location.search); // out of the address bar
  }
  return sessionStorage.getItem(KEY);
}

function toast(text: string): void {
  const t = $("toast");
  t.textContent = text;
  t.className = "show";
  clearTimeout((toast as any).timer);
  (toast as any).timer = setTimeout(() => (t.className = ""), 3000);
}

const esc = (s: unknown) =>
  String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

function spark(values: number[]): string {
  if (values.length < 2) return "";
  const w = 60;
  const h = 16;
  const pts = values.map((v, i) => `${((i / (values.length - 1)) * w).toFixed(1)},${(h - (Math.min(100, v) / 100) * h).toFixed(1)}`);
  const last = values[values.length - 1]!;
  const color = last > 90 ? "#f85149" : last > 75 ? "#d29922" : "#58a6ff";
  return `<svg width="${w}" height="${h}" viewBox="0 0 ${w} ${h}"><polyline fill="none" stroke="${color}" stroke-width="1.5" points="${pts.join(" ")}"/></svg>`;
}

const push = (arr: number[], v: unknown) => {
  if (typeof v === "number") {
    arr.push(v);
    if (arr.length > 30) arr.shift();
  }
};

function onEvent(msg: RoomEvent): void {
  (seen[msg.room] ??= []).push(msg.id);
  const d = msg.data as Record<string, any>;
  switch (msg.room) {
    case "agents": {
      if (msg.type !== "agent_status" && msg.type !== "agent_updated") break;
      const id = String(d.agent_id ?? msg.sender);
      const a: Agent = agents.get(id) ?? { id, hostname: id, status: "unknown", cpu: [], mem: [], disk: [], last: "" };
      a.hostname = d.hostname ?? a.hostname;
      a.status = d.status ?? a.status;
      push(a.cpu, d.cpu_usage);
      push(a.mem, d.memory_usage);
      push(a.disk, d.disk_usage);
      a.last = msg.timestamp;
      agents.set(id, a);
      break;
    }
    case "tasks": {
      const id = String(d.task_id ?? "");
      if (!id) break;
      const t: Task = tasks.get(id) ?? { id, name: d.name ?? `task ${id}`, agent: d.hostname ?? "", progress: 0, state: "created", logs: [] };
      tasks.delete(id); // most recent last
      if (d.name) t.name = d.name;
      if (typeof d.progress === "number") t.progress = d.progress;
      t.state = msg.type.replace("task_", "");
      if (msg.type === "task_completed") t.progress = 100;
      const line = d.message ?? d.error;
      if (line) t.logs.push(`${msg.timestamp.slice(11, 19)} ${line}`);
      tasks.set(id, t);
      while (tasks.size > 8) tasks.delete(tasks.keys().next().value!);
      break;
    }
    case "alerts": {
      const id = String(d.alert_id ?? "");
      if (!id) break;
      const a: Alert = alerts.get(id) ?? { id, title: d.title ?? id, severity: d.severity ?? "medium", state: "triggered", at: msg.timestamp };
      if (d.title) a.title = d.title;
      if (d.severity) a.severity = d.severity;
      if (d.agent_id !== undefined) a.agent = String(d.hostname ?? d.agent_id);
      const next = msg.type.replace("alert_", "");
      // a late escalation does not reopen an acknowledged or resolved alert
      if (!(next === "escalated" && (a.state === "acknowledged" || a.state === "resolved")) && a.state !== "resolved") a.state = next;
      if (d.by) a.by = String(d.by);
      alerts.set(id, a);
      break;
    }
    case "system": {
      const li = document.createElement("li");
      li.textContent = `#${msg.metadata.offset ?? "?"} ${msg.type} ${JSON.stringify(msg.data).slice(0, 120)}`;
      const list = $("system");
      list.prepend(li);
      while (list.children.length > 200) list.lastElementChild!.remove();
      $("system-count").textContent = `${seen.system!.length} messages`;
      break;
    }
  }
  if (!dirty) {
    dirty = true;
    requestAnimationFrame(render);
  }
}

function render(): void {
  dirty = false;
  $("agents").innerHTML = [...agents.values()]
    .sort((a, b) => a.hostname.localeCompare(b.hostname))
    .map(
      (a) => `<tr data-agent="${esc(a.id)}"><td>${esc(a.hostname)}</td><td><span class="status ${esc(a.status)}">${esc(a.status)}</span></td>
        ${[a.cpu, a.mem, a.disk].map((v) => `<td class="metric">${v.length ? v[v.length - 1]!.toFixed(1) + "%" : "–"}${spark(v)}</td>`).join("")}
        <td>${esc(a.last.slice(11, 19))}</td></tr>`,
    )
    .join("");
  $("agents-count").textContent = `${agents.size}`;
  $("tasks").innerHTML = [...tasks.values()]
    .reverse()
    .map(
      (t) => `<li class="${esc(t.state)}" data-task="${esc(t.id)}"><div class="task-head"><span>${esc(t.name)} <small>${esc(t.agent)}</small></span>
        <span>${esc(t.state)} ${t.progress.toFixed(0)}%</span></div><div class="bar"><div style="width:${Math.min(100, t.progress)}%"></div></div>
        <details><summary>log (${t.logs.length})</summary><pre>${esc(t.logs.slice(-20).join("\n"))}</pre></details></li>`,
    )
    .join("");
  $("tasks-count").textContent = `${tasks.size}`;
  const open = [...alerts.values()].filter((a) => a.state !== "resolved").length;
  $("alerts").innerHTML = [...alerts.values()]
    .reverse()
    .slice(0, 30)
    .map(
      (a) => `<li class="${esc(a.severity)} ${esc(a.state)}" data-alert="${esc(a.id)}" data-state="${esc(a.state)}">
        <div class="alert-head"><strong>${esc(a.title)}</strong><span class="alert-state">${esc(a.severity)} · ${esc(a.state)}${a.by ? " by " + esc(a.by) : ""}</span></div>
        <small>${esc(a.agent ?? "")} ${esc(a.at.slice(11, 19))} · ${esc(a.id)}</small>
        <div class="alert-actions"><button data-act="ack" ${a.state === "triggered" || a.state === "escalated" ? "" : "disabled"}>Acknowledge</button>
        <button data-act="resolve" ${a.state === "resolved" ? "disabled" : ""}>Resolve</button></div></li>`,
    )
    .join("");
  $("alerts-count").textContent = `${open} open`;
}

function start(token: string): void {
  $("login").hidden = true;
  $("app").hidden = false;
  const client = new RoomgateClient({ getToken: () => sessionStorage.getItem(KEY) ?? token });
  const conn = $("conn");
  client.on("state", (s) => {
    conn.dataset.state = s;
    $("conn-state").textContent = s;
  });
  client.on("connected", ({ gateway, transport, welcome }) => {
    $("conn-gateway").textContent = `gateway ${gateway}`;
    $("conn-transport").textContent = transport === "websocket" ? "WebSocket" : "SSE fallback";
    $("user").textContent = `${welcome.kind} ${welcome.user_id}`;
    client.ping();
  });
  client.on("latency", (ms) => ($("conn-latency").textContent = `${ms} ms`));
  client.on("unrecovered", (d) => toast(`${d.room}: ${d.missed ?? "some"} messages no longer in history`));
  client.on("evicted", (d) => toast(`removed from ${d.room}: ${d.reason}`));
  client.on("error", (e) => {
    if (e.code === "permission_denied") toast(`${e.room}: permission denied (${e.reason ?? ""})`);
  });
  client.on("failed", (reason) => {
    sessionStorage.removeItem(KEY);
    toast(`connection failed: ${reason}`);
    showLogin();
  });
  // The personal rooms (user-{id}: the mailbox, kept until acked; the SDK acks each once shown).
  client.onPersonal((msg) => {
    (seen[msg.room] ??= []).push(msg.id);
    toast(`${msg.type}: ${JSON.stringify(msg.data).slice(0, 80)}`);
  });
  const rooms = new RoomSet(client, onEvent, { dashboard: () => ROOMS });
  rooms.page("dashboard");
  $("alerts").addEventListener("click", (e) => {
    const button = (e.target as HTMLElement).closest("button");
    const li = button?.closest("li");
    if (!button || !li) return;
    const id = li.dataset.alert!;
    const type = button.dataset.act === "ack" ? "alert_acknowledged" : "alert_resolved";
    button.disabled = true;
    client
      .publish("alerts", type, { alert_id: id }, { ack: true })
      .then((ack) => toast(`${id}: ${type === "alert_acknowledged" ? "acknowledged" : "resolved"}${ack && ack.changed === false ? " (already)" : ""}`))
      .catch((err) => {
        button.disabled = false;
        toast(`${id}: ${err instanceof ServerError ? err.code : err.message}`);
      });
  });
  (window as any).roomgateConsole = { client, seen, agents, tasks, alerts };
  client.connect();
}

function showLogin(): void {
  $("app").hidden = true;
  $("login").hidden = false;
}

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const token = $<HTMLTextAreaElement>("login-token").value.trim();
  if (!token) return;
  sessionStorage.setItem(KEY, token);
  location.reload();
});

const token = takeToken();
if (token) start(token);
else showLogin();
