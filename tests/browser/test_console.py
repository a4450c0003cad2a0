"""The console and @roomgate/client in headless Chromium against the real stack: live
updates render, an alert is acknowledged and resolved through the escalation service, a
frozen (hidden) tab stays connected past heartbeat_timeout, WebSockets blocked → the SSE
fallback carries the same flow, and a SIGKILLed gateway costs the page nothing (every
published message exactly once, by id)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Any

import pytest
from roomgate_tools.stack import LocalStack, haproxy_servers

from tests.browser.conftest import HEARTBEAT_TIMEOUT, Backend, Browser, console_url

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

CONNECTED = "window.roomgateConsole && roomgateConsole.client.state === 'connected'"
SUBSCRIBED = (
    CONNECTED + " && ['agents','tasks','alerts','system'].every("
    "r => roomgateConsole.client.subscriptions()[r])"
)


async def open_console(browser: Browser, stack: LocalStack, **kw: Any) -> None:
    await browser.call("open", url=console_url(stack), **kw)
    await browser.wait(SUBSCRIBED, timeout=20)


async def feed_dashboard(backend: Backend, alert_id: str) -> None:
    for n in range(3):
        for i, host in enumerate(("web-01", "db-01")):
            await backend.publish(
                "agents",
                "agent_status",
                {
                    "agent_id": 1001 + i,
                    "hostname": host,
                    "status": "online",
                    "cpu_usage": 20.0 + 10 * n + i,
                    "memory_usage": 50.0 + n,
                    "disk_usage": 40.0,
                },
            )
    await backend.publish("tasks", "task_created", {"task_id": 7, "name": "apt upgrade"})
    await backend.publish(
        "tasks", "task_progress", {"task_id": 7, "progress": 65, "message": "step 3/5"}
    )
    await backend.publish(
        "alerts",
        "alert_triggered",
        {"alert_id": alert_id, "severity": "high", "title": "High CPU on web-01", "agent_id": 1001},
    )
    await backend.publish("system", "metrics_update", {"cpu_avg": 31.5})


async def alert_round_trip(browser: Browser, alert_id: str) -> None:
    """Acknowledge, then resolve, through the page's buttons; the escalation service's
    canonical events come back into `alerts` and change the row."""
    row = f"#alerts li[data-alert='{alert_id}']"
    for action, state in (("ack", "acknowledged"), ("resolve", "resolved")):
        deadline = time.monotonic() + 15
        while True:  # the escalation service consumes the trigger from the stream on its own
            await browser.call("click", selector=f"{row} button[data-act='{action}']")
            with contextlib.suppress(Exception):
                await browser.wait(
                    f"document.querySelector(\"{row}\")?.dataset.state === '{state}'", timeout=3
                )
                break
            assert time.monotonic() < deadline, f"{alert_id} never became {state}"


async def test_console_renders_live_updates_and_acknowledges_an_alert(
    shared_stack: LocalStack, browser: Browser, backend_for: Any
) -> None:
    """Agents with sparklines, a task's progress bar, the alert feed, the connection indicator; Acknowledge/Resolve round-trip through escalation."""
    backend = backend_for(shared_stack)
    await open_console(browser, shared_stack)
    await feed_dashboard(backend, "e2e-ws-1")
    await browser.wait("document.querySelectorAll('#agents tr').length === 2")
    await browser.wait("document.querySelectorAll('#agents svg polyline').length === 6")
    assert (
        await browser.wait(
            "document.querySelector(\"#tasks li[data-task='7'] .bar > div\")?.style.width"
        )
        == "65%"
    )
    await browser.wait("document.querySelector(\"#alerts li[data-alert='e2e-ws-1']\")")
    indicator = await browser.eval("document.getElementById('conn').innerText")
    assert "connected" in indicator and "WebSocket" in indicator and "gateway gw-" in indicator
    await browser.wait("/\\d+ ms/.test(document.getElementById('conn-latency').textContent)")
    # A room event above the gateway's compression threshold arrives as a `compressed`
    # frame (the SDK asked for them: the browser has DecompressionStream) and is inflated.
    assert await browser.eval("roomgateConsole.client.welcome.compression") == "deflate"
    big = await backend.publish("system", "inventory_refresh", {"packages": ["pkg"] * 1500})
    assert big is not None
    await browser.wait(f"roomgateConsole.seen.system?.includes('{big['id']}')")
    await browser.screenshot("console-live")
    await alert_round_trip(browser, "e2e-ws-1")
    assert "by 42" in await browser.eval(
        "document.querySelector(\"#alerts li[data-alert='e2e-ws-1'] .alert-state\").textContent"
    )
    await browser.screenshot("console-alert-resolved")
    assert await browser.eval("roomgateConsole.client.stats.duplicates") == 0


async def test_hidden_tab_with_suspended_timers_stays_connected_past_heartbeat_timeout(
    shared_stack: LocalStack, browser: Browser, backend_for: Any
) -> None:
    """No JS timer runs for 3x heartbeat_timeout (so no `ping` goes out): the WebSocket stays open, because the browser's pongs count as liveness."""
    backend = backend_for(shared_stack)
    await open_console(browser, shared_stack)
    await browser.eval(
        "window.__sent = 0; const send = WebSocket.prototype.send;"
        "WebSocket.prototype.send = function (t) { __sent++; return send.call(this, t); }; true"
    )
    # A background tab gets its timers throttled to one wake-up a minute; here they stop:
    # the page's virtual time is paused (headless Chromium keeps every tab visible and ignores
    # Page.setWebLifecycleState "frozen"; CPU throttling on top of the pause hangs evaluate),
    # so setInterval never fires and Date.now() stands still, while the browser's network
    # stack answers the gateway's WebSocket pings.
    await browser.call("cdp", method="Emulation.setVirtualTimePolicy", params={"policy": "pause"})
    clock = await browser.eval("Date.now()")
    await asyncio.sleep(HEARTBEAT_TIMEOUT * 3)
    assert await browser.eval("Date.now()") - clock < 1000, "the page's timers kept running"
    assert await browser.eval("__sent") == 0, "the page sent a ping"
    sent = await backend.publish("system", "metrics_update", {"after": "pause"})
    assert sent is not None
    await browser.poll(f"roomgateConsole.seen.system?.includes('{sent['id']}')")
    stats = await browser.eval("roomgateConsole.client.stats")
    assert stats["connects"] == 1 and stats["closes"] == [], stats
    assert await browser.eval("roomgateConsole.client.state") == "connected"


async def test_sse_fallback_when_websockets_are_blocked(
    shared_stack: LocalStack, browser: Browser, backend_for: Any
) -> None:
    """WebSockets fail (1006) → the same console over /sse + POST: live updates and the alert round trip."""
    backend = backend_for(shared_stack)
    await open_console(browser, shared_stack, blockWebSocket=True)
    assert await browser.eval("roomgateConsole.client.transport") == "sse"
    await feed_dashboard(backend, "e2e-sse-1")
    await browser.wait("document.querySelectorAll('#agents svg polyline').length === 6")
    await browser.wait("document.querySelector(\"#alerts li[data-alert='e2e-sse-1']\")")
    assert "SSE fallback" in await browser.eval("document.getElementById('conn').innerText")
    await alert_round_trip(browser, "e2e-sse-1")
    await browser.screenshot("console-sse")


async def revive(stack: LocalStack, gateway: str) -> None:
    """Start a killed gateway again and wait until HAProxy sends clients to it."""
    stack.component(gateway).process.start()
    deadline = time.monotonic() + 30
    while set(haproxy_servers(stack.ports.lb).values()) != {"UP"}:
        assert time.monotonic() < deadline, f"{gateway} did not come back"
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_sigkill_gateway_page_shows_every_message_exactly_once(
    shared_stack: LocalStack, browser: Browser, backend_for: Any, transport: str
) -> None:
    """SIGKILL the page's gateway mid-stream: it reconnects through HAProxy and its system feed holds every accepted message exactly once, in order."""
    stack = shared_stack
    backend = backend_for(stack)
    await open_console(browser, stack, blockWebSocket=transport == "sse")
    assert await browser.eval("roomgateConsole.client.transport") == transport
    victim = await browser.eval("roomgateConsole.client.welcome.gateway")
    stop = asyncio.Event()

    async def publish() -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            await backend.publish("system", "metrics_update", {"n": n})
            await asyncio.sleep(0.02)

    publishing = asyncio.create_task(publish())
    try:
        while len(backend.ids("system")) < 40:
            await asyncio.sleep(0.05)
        stack.component(victim).process.kill()  # SIGKILL
        await browser.wait(
            f"roomgateConsole.client.stats.connects >= 2 && "
            f"roomgateConsole.client.welcome.gateway !== '{victim}' && "
            "roomgateConsole.client.stats.lastRecoverMs !== null",
            timeout=30,
        )
        mark = len(backend.ids("system"))
        while len(backend.ids("system")) < mark + 40:
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await publishing
        if not stack.component(victim).process.running:
            await revive(stack, victim)  # for the next test on this stack
    expected = backend.ids("system")
    await browser.wait(f"(roomgateConsole.seen.system || []).length >= {len(expected)}", timeout=15)
    seen = await browser.eval("roomgateConsole.seen.system")
    assert len(seen) == len(set(seen)), "duplicates"
    assert seen == expected
    recover_ms = await browser.eval("roomgateConsole.client.stats.lastRecoverMs")
    print(f"\n{transport}: reconnect-and-recover after SIGKILL: {recover_ms} ms")
    (stack.state_dir / f"recover-{transport}.txt").write_text(f"{recover_ms}\n")
    await browser.screenshot(f"console-after-kill-{transport}")


async def test_mailbox_is_delivered_once_and_acked(
    shared_stack: LocalStack, browser: Browser, backend_for: Any
) -> None:
    """A message for user 42 published while no page is open waits in the mailbox, reaches the next page, is acked by the SDK, and does not come again."""
    backend = backend_for(shared_stack)
    sent = await backend.publish("user-42", "alert_escalated", {"alert_id": "mb-1", "level": 1})
    assert sent is not None
    await open_console(browser, shared_stack)
    await browser.wait(f"roomgateConsole.seen['user-42']?.includes('{sent['id']}')")
    await asyncio.sleep(1.5)  # the ack is on its way (batched within 100 ms)
    await open_console(browser, shared_stack)  # a new page: a new connection
    await asyncio.sleep(2)
    assert sent["id"] not in (await browser.eval("roomgateConsole.seen['user-42'] || []"))
