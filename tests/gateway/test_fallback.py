"""The HTTP fallback (``GET /sse`` + ``POST /sse/{session}``): the WebSocket protocol over
server-sent events, against a real uvicorn with real ``httpx`` streaming clients."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import Stack, recv
from tests.gateway.test_fanout import flatten
from tests.gateway.test_limits import refused


class SseClient:
    """A minimal SSE client: events in a queue, frames POSTed with the session secret."""

    def __init__(self, http: httpx.AsyncClient, response: httpx.Response) -> None:
        self.http = http
        self.response = response
        self.headers = response.headers
        self.events: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.comments = 0
        self.session: dict[str, str] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        event, data = "message", []
        with contextlib.suppress(httpx.HTTPError):
            async for line in self.response.aiter_lines():
                if line == "":
                    if data:
                        await self.events.put((event, "\n".join(data)))
                    event, data = "message", []
                elif line.startswith(":"):
                    self.comments += 1
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
        await self.events.put(("eof", ""))

    async def next(self, timeout: float = 5.0) -> tuple[str, dict[str, Any]]:
        event, data = await asyncio.wait_for(self.events.get(), timeout)
        return event, (json.loads(data) if data else {})

    async def frame(self, timeout: float = 5.0) -> dict[str, Any]:
        event, data = await self.next(timeout)
        assert event == "message", (event, data)
        return data

    async def until(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event, data = await self.next(max(0.01, deadline - loop.time()))
            if event == "message" and pred(data):
                return data

    async def closed_with(self, timeout: float = 5.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event, data = await self.next(max(0.01, deadline - loop.time()))
            if event == "close":
                assert (await self.next())[0] == "eof"
                return data
            assert event != "eof", "stream ended without a close event"

    async def post(self, body: Any, *, raw: bytes | None = None) -> httpx.Response:
        return await self.http.post(
            self.session["post"],
            content=raw if raw is not None else json.dumps(body).encode(),
            headers={"X-Roomgate-Session-Secret": self.session["secret"]},
        )

    async def aclose(self) -> None:
        await self.response.aclose()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def sse(
    base: str,
    token: str | None,
    *,
    header: bool = False,
    welcome: bool = True,
    http: httpx.AsyncClient | None = None,
) -> AsyncIterator[SseClient]:
    """Open ``/sse``; read the `session` event (and the welcome and personal rooms)."""
    own = http is None
    client = http or httpx.AsyncClient(base_url=base, timeout=10)
    params = {} if header or token is None else {"token": token}
    headers = {"Authorization": f"Bearer {token}"} if header else {}
    request = client.build_request("GET", "/sse", params=params, headers=headers)
    response = await client.send(request, stream=True)
    s = SseClient(client, response)
    try:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event, s.session = await s.next()
        assert event == "session"
        assert s.session["session_id"] == response.headers["x-roomgate-session"]
        if welcome:
            assert (await s.frame())["type"] == "welcome"
            while True:
                try:
                    event, msg = await s.next(timeout=0.3)
                except TimeoutError:
                    break
                assert msg["type"] == "subscribed", msg
        yield s
    finally:
        await s.aclose()
        if own:
            await client.aclose()


async def test_welcome_is_the_websocket_welcome(stack: Stack) -> None:
    """The SSE stream announces a session, then sends the same welcome as /ws."""
    token = stack.token("42")
    async with sse(stack.http, token, welcome=False) as s:
        hello = await s.frame()
        ws = await stack.connect(token, welcome=False)
        ws_hello = await recv(ws)
    assert hello["type"] == ws_hello["type"] == "welcome"
    assert set(hello) == set(ws_hello)
    assert set(hello["data"]) == set(ws_hello["data"])
    for key in ("user_id", "kind", "limits", "heartbeat_interval", "gateway", "compression"):
        assert hello["data"][key] == ws_hello["data"][key], key
    assert s.headers["cache-control"].startswith("no-cache")


async def test_bearer_header_subscribe_by_post_and_receive_events(stack: Stack) -> None:
    """Token in the Authorization header; subscribe by POST; a published event arrives on the stream."""
    async with sse(stack.http, stack.token("42"), header=True) as s:
        response = await s.post(
            {"type": "subscribe", "data": {"room": "system"}, "metadata": {"correlation_id": "c1"}}
        )
        assert response.status_code == 202
        ok = await s.frame()
        assert ok["type"] == "subscribed" and ok["data"]["room"] == "system"
        assert ok["metadata"]["correlation_id"] == "c1"
        sent = await stack.publish("system", "metrics_update", {"cpu": 1})
        event = await s.until(lambda m: m["type"] == "metrics_update")
        assert event["id"] == sent.id
        assert event["metadata"]["offset"] == sent.offset
        assert (await s.post({"type": "ping", "timestamp": 7})).status_code == 202
        pong = await s.until(lambda m: m["type"] == "pong")
        assert pong["data"]["timestamp"] == 7


async def test_recovery_with_since(stack: Stack) -> None:
    """`since` replays what was missed, in order, then live messages follow: as on /ws."""
    sent = [await stack.publish("system", "metrics_update", {"n": i}) for i in range(5)]
    async with sse(stack.http, stack.token("42")) as s:
        since = {"offset": 2, "epoch": sent[0].epoch}
        await s.post({"type": "subscribe", "data": {"room": "system", "since": since}})
        ok = await s.frame()
        assert ok["data"]["recovered"] is True and ok["data"]["replayed"] == 3
        got: list[dict[str, Any]] = []
        while len(got) < 3:
            got += flatten(await s.frame())
        assert [m["id"] for m in got] == [m.id for m in sent[2:]]
        live = await stack.publish("system", "metrics_update", {"n": 5})
        assert (await s.until(lambda m: m["type"] == "metrics_update"))["id"] == live.id


async def test_batch_and_errors_arrive_on_the_stream(stack: Stack) -> None:
    """Malformed JSON and unknown types POSTed get `error` frames on the stream; a batch is answered message by message."""
    async with sse(stack.http, stack.token("42")) as s:
        assert (await s.post(None, raw=b"{not json")).status_code == 202
        err = await s.frame()
        assert err["type"] == "error" and err["data"]["code"] == "malformed_json"
        await s.post({"type": "nope", "id": "m-1"})
        err = await s.frame()
        assert err["data"]["code"] == "unknown_type" and err["data"]["ref_id"] == "m-1"
        await s.post(
            {
                "type": "batch",
                "messages": [
                    {"type": "subscribe", "data": {"room": "system"}},
                    {"type": "subscribe", "data": {"room": "maintenance"}},
                ],
            }
        )
        rooms = [(await s.frame())["data"]["room"] for _ in range(2)]
        assert rooms == ["system", "maintenance"]


async def test_unknown_session_and_wrong_secret(stack: Stack) -> None:
    """POST to an unknown session is 404; without the session's secret it is 403."""
    async with httpx.AsyncClient(base_url=stack.http) as http:
        response = await http.post("/sse/nope", content=b"{}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "session_not_found"
        async with sse(stack.http, stack.token("42"), http=http) as s:
            url = s.session["post"]
            response = await http.post(url, content=b'{"type":"ping"}')
            assert response.status_code == 403
            response = await http.post(
                url, content=b'{"type":"ping"}', headers={"X-Roomgate-Session-Secret": "guess"}
            )
            assert response.status_code == 403
        for _ in range(50):  # the session ends with its stream
            if (await http.post(url, content=b"{}")).status_code == 404:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("session still there after the stream closed")


async def test_invalid_token_gets_error_then_close_4001(stack: Stack) -> None:
    """A bad token: `error` `unauthorized`, then a final `close` event 4001 and the end of the stream."""
    async with sse(stack.http, "not-a-jwt", welcome=False) as s:
        err = await s.frame()
        assert err["data"]["code"] == "unauthorized"
        assert await s.closed_with() == {"code": 4001, "reason": "Unauthorized"}


@pytest.mark.gateway_settings(auth_deadline=2.0)
async def test_auth_message_by_post(stack: Stack) -> None:
    """Without a token the session waits for an `auth` message, POSTed like any other."""
    async with sse(stack.http, None, welcome=False) as s:
        await s.post({"type": "auth", "token": stack.token("42")})
        assert (await s.frame())["type"] == "welcome"


@pytest.mark.gateway_settings(max_message_bytes=1024)
async def test_too_big_post_is_413_and_closes_1009(stack: Stack) -> None:
    """A body above maxMessageBytes is refused 413 and closes the session 1009, as a too-big frame does."""
    async with sse(stack.http, stack.token("42")) as s:
        response = await s.post({"type": "ping", "data": {"pad": "x" * 2000}})
        assert response.status_code == 413
        assert (await s.closed_with())["code"] == 1009


@pytest.mark.gateway_settings(max_connections_per_user=2)
async def test_per_user_limit_counts_sse_and_websocket(stack: Stack) -> None:
    """An SSE session and a WebSocket count against the same per-user limit."""
    token = stack.token("42")
    async with sse(stack.http, token):
        await stack.connect(token)
        assert (await refused(stack, f"{stack.url}?token={token}")) == ("connection_limit", 4029)
        async with sse(stack.http, token, welcome=False) as third:
            assert (await third.frame())["data"]["code"] == "connection_limit"
            assert (await third.closed_with())["code"] == 4029
    for _ in range(100):  # the stream's slot is released when it drops
        if len(stack.gateway.connections) == 1:
            break
        await asyncio.sleep(0.02)
    assert len(stack.gateway.connections) == 1


@pytest.mark.gateway_settings(heartbeat_interval=0.4, heartbeat_timeout=1.2)
async def test_keepalive_comments_and_heartbeat_timeout(stack: Stack) -> None:
    """Idle streams get keep-alive comments; a session that POSTs nothing is closed 4008."""
    async with sse(stack.http, stack.token("42")) as s:
        loop = asyncio.get_running_loop()
        until = loop.time() + 1.0
        while loop.time() < until:  # ping for a while: the session stays
            await s.post({"type": "ping"})
            await s.until(lambda m: m["type"] == "pong")
            await asyncio.sleep(0.2)
        assert s.comments >= 1
        assert (await s.closed_with(timeout=5))["code"] == 4008


async def test_drain_sends_reconnect_then_close_1012(stack: Stack) -> None:
    """On SIGTERM's drain an SSE client gets the `reconnect` hint and close 1012, as on /ws."""
    async with sse(stack.http, stack.token("42")) as s:
        await stack.gateway.drain()
        hint = await s.until(lambda m: m["type"] == "reconnect")
        assert hint["data"]["reason"] == "draining"
        assert (await s.closed_with())["code"] == 1012


async def test_compression_as_on_websocket(stack: Stack) -> None:
    """`compress=1` on /sse: big room events arrive as `compressed` frames, as on /ws."""
    async with httpx.AsyncClient(base_url=stack.http, timeout=10) as http:
        token = stack.token("42")
        response = await http.send(
            http.build_request("GET", "/sse", params={"token": token, "compress": "1"}),
            stream=True,
        )
        s = SseClient(http, response)
        try:
            _, s.session = await s.next()
            hello = await s.frame()
            assert hello["data"]["compression"] == "deflate"
            await s.post({"type": "subscribe", "data": {"room": "system"}})
            await s.until(lambda m: m["type"] == "subscribed" and m["data"]["room"] == "system")
            sent = await stack.publish("system", "metrics_update", {"blob": "x" * 4000})
            frame = await s.until(lambda m: m["type"] == "compressed")
            inner = json.loads(zlib.decompress(base64.b64decode(frame["data"])))
            assert inner["id"] == sent.id
        finally:
            await s.aclose()
