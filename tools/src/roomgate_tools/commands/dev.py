"""``roomgate dev``: the whole system on this machine (``make dev``), until Ctrl-C.

Starts redis-server (AOF, data in .dev/redis), auth, roomauthz, escalation (when installed),
two gateways (gw-1, gw-2) and HAProxy in front of them with cookie stickiness, waits until
every part is ready, prints where to connect (the operations console at /console among it,
with a dev login in the URL fragment), feeds it synthetic traffic (``roomgate demo``; not with
``--no-demo``), then streams the logs (also in .dev/logs/).
Ctrl-C or SIGTERM stops everything in reverse order (the gateways drain) and exits 0; a
process dying on its own stops the rest and exits 1.

Default ports: LB 8000, gateways 8081 8082, auth 50051, roomauthz 50052, escalation 50053,
redis 6390, metrics of the gRPC services 9101 9102 9103. ``--base-port N`` moves all ten to
N..N+9; ``--free-ports`` lets the kernel pick.

``roomgate dev --check`` starts a throw-away stack on free ports (state under .dev/check-*),
connects one WebSocket client through HAProxy with a dev token, publishes into its room
through Redis and the HTTP API, prints OK and stops: the smoke test of a checkout.

``--containers`` runs every part as a container instead (the images of ``make images``, each
with the chart's security context, on the host's network; Redis and HAProxy from the infra
image): a running Docker daemon is used, else a dockerd of its own is started and stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from roomgate_tools import devenv
from roomgate_tools.containers import ContainerRuntime
from roomgate_tools.engine import DockerEngine, EngineError
from roomgate_tools.observability import ObsPorts
from roomgate_tools.stack import (
    AFFINITY_COOKIE,
    STATS_PATH,
    LocalStack,
    StackConfig,
    StackError,
    StackPorts,
    log_tail,
)

# Exit codes that mean "stopped as asked": 0, or killed by the SIGTERM we sent (uvicorn
# re-raises it after its graceful shutdown).
CLEAN_EXITS = (0, -signal.SIGTERM)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "dev",
        help="run the whole system locally (Ctrl-C stops everything)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="start, connect one client through the LB, publish, stop; exit 0 when all is well",
    )
    ports = parser.add_mutually_exclusive_group()
    ports.add_argument("--base-port", type=int, metavar="N", help="use ports N..N+9")
    ports.add_argument(
        "--free-ports", action="store_true", help="let the kernel pick (default with --check)"
    )
    parser.add_argument(
        "--no-escalation", action="store_true", help="do not run the escalation service"
    )
    parser.add_argument(
        "--no-demo", action="store_true", help="do not feed the console synthetic traffic"
    )
    parser.add_argument(
        "--containers",
        action="store_true",
        help="run every part as a container of the images `make images` built",
    )
    parser.add_argument(
        "--no-observability",
        action="store_true",
        help="do not run Jaeger and Prometheus (never run with --check)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="do not stream the logs")
    parser.add_argument("--log-level", default="INFO", help="services' log level (INFO)")
    parser.add_argument(
        "--drain-seconds", type=float, default=2.0, help="gateway drain on stop (2)"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for readiness (120)"
    )
    parser.set_defaults(func=run)


def _ports(args: argparse.Namespace) -> StackPorts:
    if args.base_port is not None:
        return StackPorts.from_base(args.base_port)
    if args.free_ports or args.check:
        return StackPorts.free()
    return StackPorts.default()


def run(args: argparse.Namespace) -> int:
    try:
        with _runtime(args.containers) as runtime:
            args.runtime = runtime
            if args.check:
                return _check(args)
            return _serve(args)
    except StackError as exc:
        print(f"roomgate dev: {exc}", file=sys.stderr)
        return 1


@contextlib.contextmanager
def _runtime(containers: bool) -> Iterator[ContainerRuntime | None]:
    """With ``--containers``: an engine (ours stopped at the end) and the built images."""
    if not containers:
        yield None
        return
    from roomgate_tools.images import INFRA_REF, chart_images

    try:
        engine = DockerEngine.ensure()
    except EngineError as exc:
        raise StackError(str(exc)) from None
    if engine.own:
        print(f"roomgate dev: started dockerd ({engine.env['DOCKER_HOST']})", flush=True)
    runtime = ContainerRuntime(engine, chart_images().refs, INFRA_REF)
    try:
        missing = runtime.missing()
        if missing:
            raise StackError(f"images missing: {', '.join(missing)}; run `make images`")
        yield runtime
    finally:
        runtime.remove_all()
        engine.stop()


# ------------------------------------------------------------------------------- serve
class _Signals:
    """First Ctrl-C/SIGTERM: stop in order (interrupting a start in progress); the next
    one while stopping: SIGKILL everything."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.starting = True
        self.stack: LocalStack | None = None
        self.count = 0
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        self.requested.set()
        if self.count > 1 and self.stack is not None:
            print("\nroomgate dev: killing everything", file=sys.stderr, flush=True)
            self.stack.kill()
        elif self.starting:
            raise KeyboardInterrupt
        else:
            name = signal.Signals(signum).name
            print(f"\nroomgate dev: {name}, stopping (again to kill)", file=sys.stderr, flush=True)


def _lock(state_dir: Path) -> TextIO:
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = (state_dir / "dev.lock").open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StackError(
            f"another `roomgate dev` uses {state_dir}; stop it or set ROOMGATE_DEV_DIR"
        ) from None
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _obs_ports(args: argparse.Namespace) -> ObsPorts:
    if args.base_port is not None:
        return ObsPorts.from_base(args.base_port + 10)
    if args.free_ports or args.check:
        return ObsPorts.free()
    return ObsPorts.default()


def _stack(args: argparse.Namespace, state_dir: Path, *, drain_seconds: float) -> LocalStack:
    """The local stack the command line asks for (ports, escalation, log level, Jaeger and
    Prometheus)."""
    return LocalStack(
        StackConfig(
            state_dir=state_dir,
            ports=_ports(args),
            observability=not (args.no_observability or args.check),
            obs_ports=_obs_ports(args),
            secrets=devenv.dev_secrets(),
            escalation=False if args.no_escalation else None,
            log_level=args.log_level,
            drain_seconds=drain_seconds,
            containers=getattr(args, "runtime", None),
        )
    )


def _serve(args: argparse.Namespace) -> int:
    state_dir = devenv.DEV_DIR
    lock = _lock(state_dir)
    signals = _Signals()
    stack = _stack(args, state_dir, drain_seconds=args.drain_seconds)
    signals.stack = stack
    started = time.monotonic()
    try:
        print(f"roomgate dev: starting (state and logs in {_show(state_dir)})", flush=True)
        stack.start(args.timeout, progress=lambda msg: print(f"  {msg}", flush=True))
        signals.starting = False
    except KeyboardInterrupt:
        print("roomgate dev: interrupted while starting; stopped", file=sys.stderr)
        lock.close()
        return 0
    print(f"roomgate dev: ready in {time.monotonic() - started:.1f}s\n", flush=True)
    print(banner(stack), flush=True)
    demo = None if args.no_demo else _start_demo(stack, signals.requested)

    tail = _LogTail(stack) if not args.quiet else None
    status = 0
    while not signals.requested.wait(0.2):
        if tail is not None:
            tail.poll()
        dead = stack.dead()
        if dead is not None:
            code = dead.process.proc.returncode if dead.process.proc else None
            print(
                f"\nroomgate dev: {dead.name} exited unexpectedly ({code}); last lines of "
                f"{_show(dead.log_path)}:\n{_render_tail(dead.log_path)}\n"
                "roomgate dev: stopping the rest",
                file=sys.stderr,
                flush=True,
            )
            status = 1
            break
    if tail is not None:
        tail.poll()
    signals.requested.set()  # stops the demo feed
    if demo is not None:
        demo.join(timeout=5)
    codes = stack.stop()
    if tail is not None:
        tail.poll()
    odd = {name: code for name, code in codes.items() if code not in CLEAN_EXITS}
    if odd and status == 0:
        print(f"roomgate dev: stopped; unclean exits: {odd}", file=sys.stderr)
    else:
        print("roomgate dev: stopped", file=sys.stderr)
    lock.close()
    return status


def _start_demo(stack: LocalStack, stop: threading.Event) -> threading.Thread:
    """``roomgate demo`` in a thread, into the load balancer, until ``stop`` is set."""
    from roomgate_tools.commands.demo import service_token
    from roomgate_tools.demo import run_feed

    def feed() -> None:
        asyncio.run(
            run_feed(
                stack.lb_http,
                service_token(stack.secrets),
                stop=stop.is_set,
                say=lambda m: print(m, file=sys.stderr, flush=True),
            )
        )

    thread = threading.Thread(target=feed, name="demo-feed", daemon=True)
    thread.start()
    return thread


def console_url(stack: LocalStack) -> str:
    """The console with a dev login: the token is in the fragment, which a browser never
    sends to a server (so no access log has it)."""
    from roomgate_tools.commands.demo import console_token

    return f"{stack.lb_http}/console/#token={console_token(stack.secrets)}"


def _show(path: Path) -> str:
    """``path`` relative to the working directory when it is under it."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _roomgate_command() -> str:
    """How the user runs ``roomgate`` (the venv's script), with ROOMGATE_DEV_DIR if set."""
    script = Path(sys.executable).parent / "roomgate"
    shown = _show(script) if script.exists() else "roomgate"
    if shown == script.name:
        shown = f"./{shown}"
    if "ROOMGATE_DEV_DIR" in os.environ:
        return f"ROOMGATE_DEV_DIR={os.environ['ROOMGATE_DEV_DIR']} {shown}"
    return shown


def banner(stack: LocalStack) -> str:
    p = stack.ports
    rg = _roomgate_command()
    python = _show(Path(sys.executable))
    lines = [
        "  Operations console (dev login for user 42 in the URL fragment, valid 12 h):",
        f"      {console_url(stack)}",
        f"  WebSocket (HAProxy, sticky cookie {AFFINITY_COOKIE}):",
        f"      {stack.ws_url()}?token=<jwt>",
        f"  publish API:   POST {stack.lb_http}/api/v1/publish  (service token, perm publish)",
        f"  HAProxy stats: {stack.lb_http}{STATS_PATH}",
    ]
    for gid, url in stack.gateway_http.items():
        lines.append(f"  gateway {gid}:  {url}  ({url}/readyz, {url}/metrics)")
    services = [
        ("auth", p.auth, p.auth_metrics),
        ("roomauthz", p.roomauthz, p.roomauthz_metrics),
    ]
    if stack.escalation_enabled:
        services.append(("escalation", p.escalation, p.escalation_metrics))
    for name, port, metrics in services:
        lines.append(
            f"  {name + ':':<14} grpc 127.0.0.1:{port}  metrics http://127.0.0.1:{metrics}/metrics"
        )
    if stack.config.observability:
        o = stack.obs_ports
        lines += [
            f"  traces:        Jaeger {stack.jaeger.base}/api/traces/<trace id>  "
            f"(/api/services; OTLP in on 127.0.0.1:{o.otlp})",
            f"  metrics:       Prometheus {stack.prometheus.base}/api/v1/query?query=...  "
            "(/api/v1/alerts; scrapes every service)",
        ]
    lines += [
        f"  redis:         {stack.redis_url}  (AOF in {_show(stack.state_dir / 'redis')})",
        f"  logs:          {_show(stack.log_dir)}/*.log",
        "",
        "Connect a client (then type the subscribe line):",
        f"  TOKEN=$({rg} token --id 42 --perm view_system)",
        f'  {python} -m websockets "{stack.ws_url()}?token=$TOKEN"',
        '  {"type":"subscribe","data":{"room":"system"}}',
        "Publish from a backend:",
        f"  SVC=$({rg} token --kind service --id dev-backend --perm publish)",
        f'  curl -s -H "Authorization: Bearer $SVC" {stack.lb_http}/api/v1/publish \\',
        """    -d '{"room":"system","type":"metrics_update","data":{"cpu":42}}'""",
        *(_trace_hint(stack) if stack.config.observability else []),
        "",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def _trace_hint(stack: LocalStack) -> list[str]:
    """How to publish with a trace id of one's own and read the trace back."""
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    return [
        "Trace it: add  -H 'traceparent: 00-"
        + trace_id
        + "-b7ad6b7169203331-01'  to the curl, then",
        f"  curl -s {stack.jaeger.base}/api/traces/{trace_id}",
        "See the traffic in Prometheus (every dashboard query works there):",
        f"  curl -s '{stack.prometheus.base}/api/v1/query?query=sum(roomgate_gateway_connections)'",
    ]


class _LogTail:
    """Prints the new lines of every log, prefixed with the process name (JSON lines of
    the services shortened to ``LEVEL logger: message key=value``)."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.offsets: dict[Path, int] = {}
        self.width = max(len(c.name) for c in stack.components)
        for c in stack.components:  # start from now: the start-up lines are in the files
            try:
                self.offsets[c.log_path] = c.log_path.stat().st_size
            except FileNotFoundError:
                self.offsets[c.log_path] = 0

    def poll(self) -> None:
        for c in self.stack.components:
            path = c.log_path
            try:
                with path.open("rb") as handle:
                    handle.seek(self.offsets.get(path, 0))
                    chunk = handle.read()
            except FileNotFoundError:
                continue
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self.offsets[path] = self.offsets.get(path, 0) + len(complete)
            for raw in complete.decode("utf-8", "replace").splitlines():
                print(f"{c.name:<{self.width}} | {_render(raw)}", flush=True)


def _render_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(_render(line) for line in log_tail(path, lines).splitlines())


def _render(line: str) -> str:
    if not line.startswith("{"):
        return line
    try:
        record: dict[str, Any] = json.loads(line)
    except ValueError:
        return line
    level = record.pop("level", "")
    logger = record.pop("logger", "")
    message = record.pop("message", "")
    for key in ("time", "service", "color_message"):
        record.pop(key, None)
    extras = " ".join(f"{k}={v}" for k, v in record.items())
    return f"{level:<7} {logger}: {message}" + (f"  {extras}" if extras else "")


# ------------------------------------------------------------------------------- check
def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _check(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # stop in order, like Ctrl-C
    devenv.DEV_DIR.mkdir(parents=True, exist_ok=True)
    state_dir = Path(tempfile.mkdtemp(prefix="check-", dir=devenv.DEV_DIR))
    stack = _stack(args, state_dir, drain_seconds=0.5)
    started = time.monotonic()
    ok = False
    try:
        stack.start(args.timeout, progress=lambda msg: print(f"  {msg}", flush=True))
        print(f"roomgate dev --check: ready in {time.monotonic() - started:.1f}s", flush=True)
        summary = asyncio.run(asyncio.wait_for(check_client(stack), 30))
        ok = True
    except (StackError, CheckFailed, TimeoutError, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        print(f"roomgate dev --check: FAILED: {reason}", file=sys.stderr)
        for c in stack.components:
            if c.name.startswith("gw") or not c.process.running:
                print(f"--- {c.name} ({c.log_path}):\n{log_tail(c.log_path, 15)}", file=sys.stderr)
    finally:
        codes = stack.stop()
    if not ok:
        print(f"roomgate dev --check: state and logs kept in {state_dir}", file=sys.stderr)
        return 1
    odd = {name: code for name, code in codes.items() if code not in CLEAN_EXITS}
    if odd:
        print(f"roomgate dev --check: FAILED: unclean exits on stop: {odd}", file=sys.stderr)
        print(f"roomgate dev --check: state and logs kept in {state_dir}", file=sys.stderr)
        return 1
    shutil.rmtree(state_dir, ignore_errors=True)
    print(f"OK {summary} ({time.monotonic() - started:.1f}s)", flush=True)
    return 0


class CheckFailed(Exception):
    pass


async def check_client(stack: LocalStack) -> str:
    """One client through HAProxy: welcome, affinity cookie, subscribe to ``system``, one
    event through the Redis publisher and one through the HTTP publish API."""
    import websockets
    from roomgate_common.publisher import Publisher
    from roomgate_common.redis_adapter import connect

    token = stack.token("42", perms=("view_system",))
    async with websockets.connect(stack.ws_url(token), open_timeout=10, max_size=None) as ws:
        cookie = ws.response.headers.get("Set-Cookie", "") if ws.response else ""
        if not cookie.startswith(f"{AFFINITY_COOKIE}="):
            raise CheckFailed(f"no {AFFINITY_COOKIE} cookie on the upgrade response: {cookie!r}")
        welcome = await _next(ws, lambda m: True)
        if welcome.get("type") != "welcome":
            raise CheckFailed(f"first frame is not a welcome: {welcome}")
        gateway = welcome["data"].get("gateway")
        await ws.send(json.dumps({"type": "subscribe", "data": {"room": "system"}}))
        await _next(ws, lambda m: m.get("type") == "subscribed" and m.get("room") == "system")

        redis = connect(stack.redis_url)
        try:
            sent = await Publisher(redis, sender="roomgate-dev-check").publish(
                "system", "metrics_update", {"check": "redis"}
            )
        finally:
            await redis.aclose()
        got = await _next(ws, lambda m: m.get("id") == sent.id)
        if got.get("data") != {"check": "redis"}:
            raise CheckFailed(f"unexpected event: {got}")

        service = stack.token("dev-check", kind="service", perms=("publish",), ttl=300)
        body = {"room": "system", "type": "metrics_update", "data": {"check": "http"}}
        status, reply = await asyncio.to_thread(
            _post_json, f"{stack.lb_http}/api/v1/publish", body, service
        )
        if status != 202:
            raise CheckFailed(f"POST /api/v1/publish answered {status}: {reply}")
        await _next(ws, lambda m: m.get("id") == reply.get("id"))
    return (
        f"welcome from {gateway} through HAProxy ({cookie.split(';')[0]}); "
        "events from the Redis publisher and the HTTP publish API received"
    )


async def _next(ws: Any, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The next message (``batch`` frames unpacked) for which ``match`` is true (10 s)."""
    try:
        async with asyncio.timeout(10):
            while True:
                message = json.loads(await ws.recv())
                if message.get("type") == "error":
                    raise CheckFailed(f"the gateway answered an error: {message}")
                batch = message.get("type") == "batch"
                for item in message.get("messages", []) if batch else [message]:
                    if match(item):
                        return dict(item)
    except TimeoutError:
        raise CheckFailed("timed out waiting for a message") from None


def _post_json(url: str, body: dict[str, Any], token: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read() or b"{}")
