"""The fan-out benchmark's harness: its bookkeeping with values, its decoders with frames,
and one short real run per server (Centrifugo: the binary `make bench-tools` builds) that checks every published event is counted for every
client (a check of the harness, not of speed)."""

from __future__ import annotations

import sys
from pathlib import Path

import msgspec
import pytest
from roomgate_tools.bench import fanout
from roomgate_tools.bench._fanout.centrifugo import CentrifugoTarget
from roomgate_tools.bench._fanout.ledger import DeliveryLedger, percentile_ms
from roomgate_tools.bench._fanout.targets import (
    GatewayTarget,
    SocketIOTarget,
    StarletteTarget,
    byte_compile,
)
from roomgate_tools.bench._fanout.wire import (
    CentrifugoWire,
    Kind,
    PlainWire,
    RoomgateWire,
    SocketIOWire,
)
from roomgate_tools.procs import ProcessError, RedisProcess


def _envelope(seq: int, sent: int) -> dict[str, object]:
    return {
        "id": f"m{seq}",
        "type": "metrics_update",
        "timestamp": "2026-11-25T20:00:00.000Z",
        "sender": "bench",
        "room": "system",
        "data": {"t": sent, "seq": seq},
        "metadata": {"priority": "normal"},
    }


def test_ledger_counts_each_event_of_the_window_once_per_client() -> None:
    """Events outside [lo, hi) are ignored; a repeated event counts as a duplicate."""
    ledger = DeliveryLedger(2)
    ledger.open(10, 13)
    for seq in (9, 10, 11, 12, 13):
        ledger.record(0, seq, sent_ns=0, received_ns=1_000_000)
    ledger.record(1, 10, sent_ns=0, received_ns=2_000_000)
    ledger.record(1, 10, sent_ns=0, received_ns=2_000_000)
    ledger.record(1, 12, sent_ns=0, received_ns=3_000_000)
    result = ledger.close(published=3)
    assert result.expected == 6
    assert result.delivered == 5
    assert result.lost == 1
    assert result.duplicates == 1
    assert result.clients_complete == 1
    assert sorted(result.latencies_ns) == [1e6, 1e6, 1e6, 2e6, 3e6]


def test_ledger_calls_back_when_the_total_is_reached() -> None:
    """notify_at fires once the window holds the asked number of deliveries."""
    ledger = DeliveryLedger(3)
    ledger.open(0, 5)
    fired: list[int] = []
    ledger.notify_at(3, lambda: fired.append(ledger.delivered))
    for client in range(3):
        ledger.record(client, 0, 0, 0)
    assert fired == [3]


def test_percentiles_use_nearest_rank() -> None:
    """p50 and p99 of 1..100 ms are 50 and 99 ms; nothing recorded gives None."""
    from array import array

    values = array("q", [ms * 1_000_000 for ms in range(100, 0, -1)])
    assert percentile_ms(values, 0.50) == 50.0
    assert percentile_ms(values, 0.99) == 99.0
    assert percentile_ms(values, 1.0) == 100.0
    assert percentile_ms(array("q"), 0.5) is None


def test_roomgate_wire_reads_envelopes_batches_and_control_frames() -> None:
    """A batch frame yields every benchmark event it holds, in order."""
    wire = RoomgateWire(["tok"])
    encode = msgspec.json.encode
    batch = {"type": "batch", "messages": [_envelope(1, 100), _envelope(2, 200)]}
    assert wire.decode(encode(batch)).events == ((1, 100), (2, 200))
    assert wire.decode(encode(_envelope(3, 300))).events == ((3, 300),)
    assert wire.decode(b'{"type":"welcome","data":{}}').kind is Kind.WELCOME
    assert wire.decode(b'{"type":"subscribed","room":"system"}').kind is Kind.SUBSCRIBED
    assert wire.decode(b'{"type":"subscribed","room":"user-1"}').kind is Kind.OTHER
    assert wire.decode(b'{"type":"error","data":{"code":"x"}}').kind is Kind.ERROR
    retry = b'{"type":"error","data":{"code":"unavailable","message":"retry"}}'
    assert wire.decode(retry).kind is Kind.RETRY
    assert wire.decode(b'{"type":"pong"}').kind is Kind.OTHER
    assert wire.path(0) == "/ws?token=tok"


def test_plain_and_socketio_wires() -> None:
    """The baselines' frames decode to the same (seq, t) pairs."""
    assert PlainWire().decode(msgspec.json.encode(_envelope(4, 400))).events == ((4, 400),)
    sio = SocketIOWire()
    assert sio.decode(b'42["metrics_update",{"t":500,"seq":5}]').events == ((5, 500),)
    assert sio.decode(b'0{"sid":"x"}').kind is Kind.OPEN
    assert sio.reply(Kind.OPEN) == b"40"
    assert sio.decode(b'40{"sid":"y"}').kind is Kind.WELCOME
    assert sio.decode(b"2").kind is Kind.PING
    assert sio.reply(Kind.PING) == b"3"
    assert sio.decode(b"431[true]").kind is Kind.SUBSCRIBED
    assert sio.subscribe_frame() == b'421["subscribe","system"]'


def test_centrifugo_wire_speaks_its_json_protocol() -> None:
    """Connect command first, replies by id, newline-joined pushes, ``{}`` pings answered."""
    wire = CentrifugoWire(["tok0", "tok1"])
    assert msgspec.json.decode(wire.hello_frame(1) or b"") == {
        "id": 1,
        "connect": {"token": "tok1", "name": "bench"},
    }
    assert msgspec.json.decode(wire.subscribe_frame() or b"") == {
        "id": 2,
        "subscribe": {"channel": "system"},
    }
    assert wire.decode(b'{"id":1,"connect":{"client":"c","ping":25,"pong":true}}').kind is (
        Kind.WELCOME
    )
    assert wire.decode(b'{"id":2,"subscribe":{}}').kind is Kind.SUBSCRIBED
    pushes = b"\n".join(
        msgspec.json.encode({"push": {"channel": "system", "pub": {"data": {"t": t, "seq": s}}}})
        for s, t in ((1, 100), (2, 200))
    )
    decoded = wire.decode(pushes)
    assert decoded.kind is Kind.EVENTS
    assert decoded.events == ((1, 100), (2, 200))
    assert wire.decode(b"{}").kind is Kind.PING
    assert wire.reply(Kind.PING) == b"{}"
    error = wire.decode(b'{"id":2,"error":{"code":103,"message":"permission denied"}}')
    assert error.kind is Kind.ERROR
    assert "103" in error.detail


@pytest.fixture
def bench_redis(tmp_path: Path):
    server = RedisProcess(tmp_path / "redis", aof=False)
    server.start()
    yield server
    server.stop()


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "target_class", [StarletteTarget, SocketIOTarget, GatewayTarget, CentrifugoTarget]
)
async def test_run_counts_every_delivered_event(
    target_class: type[StarletteTarget]
    | type[SocketIOTarget]
    | type[GatewayTarget]
    | type[CentrifugoTarget],
    bench_redis: RedisProcess,
    tmp_path: Path,
) -> None:
    """20 clients, 1 s per phase: each client is counted for each event published (the two
    baselines, and the gateway through its full protocol with auth and roomauthz)."""
    options = fanout.Options(clients=20, rate=20, duration=1.0, window=5)
    target = target_class()
    result = await fanout.measure_target(target, options, bench_redis.url, tmp_path)
    assert result.errors == []
    assert result.connected == 20
    assert not target.running
    for phase in (result.rate, result.saturation):
        assert phase is not None
        assert phase.published > 0
        assert phase.delivered == phase.expected == 20 * phase.published
        assert phase.lost == 0
        assert phase.duplicates == 0
        assert phase.clients_complete == 20
        assert not phase.stalled
        assert phase.server_cpu_s > 0
    assert result.rate is not None
    assert result.rate.published == 20
    assert "ERROR" not in fanout.render({target.name: result}, options, "0")


def test_a_server_s_import_path_is_byte_compiled_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in the images: the memory baseline must not hold the compiler's leftovers."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("X = 1\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    byte_compile(sys.executable)
    assert list((tmp_path / "pkg" / "__pycache__").glob("mod.*.pyc"))
    with pytest.raises(ProcessError, match="byte-compiling"):
        byte_compile(str(tmp_path / "no-python"))
