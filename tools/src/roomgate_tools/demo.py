"""Synthetic operations traffic for the console: a fleet of agents reporting status, tasks
running with progress and logs, alerts that fire (and go through the escalation service),
cluster metrics in ``system``.

``DemoFeed`` is pure (a seeded ``random.Random`` and the time passed in): ``step(now)``
returns the events due, as ``(room, type, data)``. ``run_feed`` publishes them through the
gateway's HTTP publish API with a service token, as a backend would.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

Event = tuple[str, str, dict[str, Any]]

HOSTS = ("web-01", "web-02", "web-03", "db-01", "db-02", "cache-01", "worker-01", "worker-02")
TASKS = (
    "apt upgrade",
    "restart nginx",
    "backup postgresql",
    "rotate logs",
    "renew certificates",
    "deploy release",
)
ALERTS = (
    ("critical", "Disk almost full on {host}"),
    ("high", "High CPU on {host}"),
    ("high", "Memory pressure on {host}"),
    ("medium", "Service restarts on {host}"),
    ("low", "Package updates pending on {host}"),
)


@dataclass
class _Agent:
    agent_id: int
    hostname: str
    cpu: float
    mem: float
    disk: float
    status: str = "online"


@dataclass
class _Task:
    task_id: int
    name: str
    agent: _Agent
    progress: float = 0.0


@dataclass
class DemoFeed:
    """What a small fleet would publish; ``step(now)`` returns what is due at ``now``."""

    rng: random.Random = field(default_factory=random.Random)
    agent_every: float = 2.0
    task_every: float = 6.0
    alert_every: float = 15.0
    system_every: float = 5.0
    agents: list[_Agent] = field(default_factory=list)
    tasks: list[_Task] = field(default_factory=list)
    _next: dict[str, float] = field(default_factory=dict)
    _seq: int = 0
    _run: str = ""

    def __post_init__(self) -> None:
        self._run = f"{self.rng.getrandbits(24):06x}"
        if not self.agents:
            self.agents = [
                _Agent(
                    1001 + i,
                    h,
                    self.rng.uniform(5, 40),
                    self.rng.uniform(30, 70),
                    self.rng.uniform(20, 80),
                )
                for i, h in enumerate(HOSTS)
            ]

    def _due(self, name: str, now: float, every: float) -> bool:
        at = self._next.get(name)
        if at is None or now >= at:
            self._next[name] = now + every * self.rng.uniform(0.7, 1.3)
            return True
        return False

    def _walk(self, value: float, spread: float, low: float = 0.5, high: float = 99.5) -> float:
        return round(min(high, max(low, value + self.rng.uniform(-spread, spread))), 1)

    def step(self, now: float) -> list[Event]:
        out: list[Event] = []
        if self._due("agents", now, self.agent_every):
            for a in self.agents:
                a.cpu = self._walk(a.cpu, 12)
                a.mem = self._walk(a.mem, 4)
                a.disk = self._walk(a.disk, 0.6)
                a.status = "degraded" if a.cpu > 90 or a.disk > 95 else "online"
                out.append(
                    (
                        "agents",
                        "agent_status",
                        {
                            "agent_id": a.agent_id,
                            "hostname": a.hostname,
                            "status": a.status,
                            "cpu_usage": a.cpu,
                            "memory_usage": a.mem,
                            "disk_usage": a.disk,
                        },
                    )
                )
        for t in list(self.tasks):
            t.progress = min(100.0, t.progress + self.rng.uniform(8, 25))
            base = {"task_id": t.task_id, "name": t.name, "hostname": t.agent.hostname}
            if t.progress >= 100.0:
                self.tasks.remove(t)
                if self.rng.random() < 0.1:
                    out.append(("tasks", "task_failed", {**base, "error": "exit status 1"}))
                else:
                    out.append(("tasks", "task_completed", {**base, "message": "done"}))
            else:
                step = f"step {int(t.progress // 20) + 1}/5 on {t.agent.hostname}"
                out.append(
                    (
                        "tasks",
                        "task_progress",
                        {**base, "progress": round(t.progress), "message": step},
                    )
                )
        if self._due("task", now, self.task_every) and len(self.tasks) < 4:
            self._seq += 1
            task = _Task(self._seq, self.rng.choice(TASKS), self.rng.choice(self.agents))
            self.tasks.append(task)
            out.append(
                (
                    "tasks",
                    "task_created",
                    {"task_id": task.task_id, "name": task.name, "hostname": task.agent.hostname},
                )
            )
        if self._due("alert", now, self.alert_every):
            self._seq += 1
            a = self.rng.choice(self.agents)
            severity, title = self.rng.choice(ALERTS)
            out.append(
                (
                    "alerts",
                    "alert_triggered",
                    {
                        "alert_id": f"demo-{self._run}-{self._seq}",
                        "severity": severity,
                        "title": title.format(host=a.hostname),
                        "agent_id": a.agent_id,
                        "hostname": a.hostname,
                    },
                )
            )
        if self._due("system", now, self.system_every):
            out.append(
                (
                    "system",
                    "metrics_update",
                    {
                        "agents_online": sum(a.status == "online" for a in self.agents),
                        "tasks_running": len(self.tasks),
                        "cpu_avg": round(sum(a.cpu for a in self.agents) / len(self.agents), 1),
                    },
                )
            )
        return out


async def run_feed(
    base_url: str,
    token: str,
    *,
    feed: DemoFeed | None = None,
    stop: Callable[[], bool] = lambda: False,
    tick: float = 1.0,
    say: Callable[[str], None] = lambda _m: None,
) -> int:
    """Publish ``feed``'s events through ``POST {base_url}/api/v1/publish`` until ``stop()``;
    returns how many were accepted. Refusals are reported once per kind, not raised: the
    feed keeps going through a gateway restart."""
    feed = feed or DemoFeed()
    accepted = 0
    reported: set[str] = set()
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=5) as http:
        while not stop():
            for room, type_, data in feed.step(time.monotonic()):
                try:
                    r = await http.post(
                        f"{base_url}/api/v1/publish",
                        json={"room": room, "type": type_, "data": data},
                        headers=headers,
                    )
                    problem = None if r.status_code == 202 else f"{r.status_code} {r.text[:200]}"
                except httpx.HTTPError as exc:
                    problem = type(exc).__name__
                if problem is None:
                    accepted += 1
                elif problem not in reported:
                    reported.add(problem)
                    say(f"demo: publish {type_} into {room}: {problem}")
            await asyncio.sleep(tick)
    return accepted
