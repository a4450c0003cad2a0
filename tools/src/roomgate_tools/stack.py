"""The whole system on one machine, as real processes: redis-server (AOF on), auth, roomauthz,
escalation (when installed), two gateways and HAProxy in front of them with cookie
stickiness, the way the Helm chart's ingress fronts the gateway pods.

``roomgate dev`` runs it for a human; tests and benchmarks start the same thing::

    with LocalStack(StackConfig(state_dir=tmp, ports=StackPorts.free())) as stack:
        ws_url = stack.ws_url(stack.token("42", perms=("view_system",)))

Every process listens on 127.0.0.1, runs in its own process group (a Ctrl-C in the terminal
reaches only the runner) and gets SIGTERM from the kernel should the runner die. ``stop()``
stops in the reverse order of the layers: gateways (SIGTERM: they drain, their reconnect
hints still flow through the LB), HAProxy, the gRPC services, Redis.

With ``StackConfig(containers=ContainerRuntime(...))`` every part is a container instead
(``roomgate dev --containers``): the images ``make images`` built, run with the chart's
security context on the host's network (``roomgate_tools.containers``); the same ports,
readiness checks, stop order and kill.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from roomgate_auth.tokens import api_key_digest, new_api_key

from roomgate_tools.containers import REDIS_USER, ContainerProcess, ContainerRuntime, Mount
from roomgate_tools.observability import (
    ALERT_RULES,
    JaegerQuery,
    ObsPorts,
    PrometheusAPI,
    ScrapeTarget,
    jaeger_process,
    prometheus_config,
    prometheus_process,
)
from roomgate_tools.procs import ManagedProcess, ProcessError, RedisProcess, which

# Same name as the chart's ingress cookie (charts/roomgate/values.yaml:
# ingress.affinity.cookieName, httpRoute.sessionPersistence.sessionName).
AFFINITY_COOKIE = "roomgate-affinity"
AFFINITY_MAX_AGE = 172800  # ingress.affinity.cookieMaxAgeSeconds
WEBSOCKET_TIMEOUT = 3600  # ingress.websocketTimeoutSeconds (proxy-read/send-timeout)
STATS_PATH = "/haproxy?stats"
DEFAULT_GATEWAY_IDS = ("gw-1", "gw-2")
# HAProxy's httplog with method and path only (%HM %HP): the query string holds the token.
HAPROXY_LOG_FORMAT = (
    "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %tsc %ac/%fc/%bc/%sc/%rc %HM %HP"
)


class StackError(RuntimeError):
    """The stack could not start, or one of its processes died."""


# --------------------------------------------------------------------------------- ports
@dataclass(frozen=True)
class StackPorts:
    lb: int
    gateways: tuple[int, int]
    auth: int
    roomauthz: int
    escalation: int
    redis: int
    auth_metrics: int
    roomauthz_metrics: int
    escalation_metrics: int

    @classmethod
    def default(cls) -> StackPorts:
        """Fixed ports a human can remember (and the README lists)."""
        return cls(
            lb=8000,
            gateways=(8081, 8082),
            auth=50051,
            roomauthz=50052,
            escalation=50053,
            redis=6390,
            auth_metrics=9101,
            roomauthz_metrics=9102,
            escalation_metrics=9103,
        )

    @classmethod
    def from_base(cls, base: int) -> StackPorts:
        """Ten consecutive ports from ``base``: LB, gateways, gRPC services, Redis, metrics."""
        if not 1024 <= base <= 65535 - 9:
            raise StackError(f"--base-port {base}: need 1024..65526")
        p = [base + i for i in range(10)]
        return cls(p[0], (p[1], p[2]), p[3], p[4], p[5], p[6], p[7], p[8], p[9])

    @classmethod
    def free(cls) -> StackPorts:
        """Ports the kernel says are free right now (tests, CI, ``--free-ports``)."""
        sockets: list[socket.socket] = []
        try:
            for _ in range(10):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind(("127.0.0.1", 0))
                sockets.append(sock)
            p = [int(s.getsockname()[1]) for s in sockets]
        finally:
            for sock in sockets:
                sock.close()
        return cls(p[0], (p[1], p[2]), p[3], p[4], p[5], p[6], p[7], p[8], p[9])

    def items(self) -> list[tuple[str, int]]:
        return [
            ("lb", self.lb),
            ("gateway 1", self.gateways[0]),
            ("gateway 2", self.gateways[1]),
            ("auth", self.auth),
            ("roomauthz", self.roomauthz),
            ("escalation", self.escalation),
            ("redis", self.redis),
            ("auth metrics", self.auth_metrics),
            ("roomauthz metrics", self.roomauthz_metrics),
            ("escalation metrics", self.escalation_metrics),
        ]

    def busy(self) -> list[tuple[str, int]]:
        """The ports something already listens on."""
        return _busy(self.items())


def _busy(items: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    taken = []
    for name, port in items:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                taken.append((name, port))
    return taken


# ---------------------------------------------------------------------------- config
@dataclass
class StackConfig:
    state_dir: Path
    ports: StackPorts = field(default_factory=StackPorts.free)
    # ROOMGATE_JWT_HS256_SECRET, ROOMGATE_ADMIN_SECRET, ROOMGATE_JWT_ISSUER, _AUDIENCE;
    # None: ``devenv.dev_secrets()``.
    secrets: Mapping[str, str] | None = None
    gateway_ids: tuple[str, str] = DEFAULT_GATEWAY_IDS
    # None: run escalation when its console script is installed, skip it (with a warning)
    # if it does not come up; True: it must come up; False: never.
    escalation: bool | None = None
    log_level: str = "INFO"
    # Gateway drain on SIGTERM (production default 10 s; a dev Ctrl-C wants it short).
    drain_seconds: float = 2.0
    # Extra ROOMGATE_* for the gateways (limits, heartbeat...), and for every service.
    gateway_env: Mapping[str, str] = field(default_factory=dict)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    aof: bool = True
    # None: processes from the venv; else containers of these images (see the docstring).
    containers: ContainerRuntime | None = None
    # Jaeger (every service exports its spans to it) and Prometheus (scrapes every service,
    # evaluates ``rule_files``): roomgate_tools/observability.py. ``obs_ports`` None: free.
    observability: bool = False
    obs_ports: ObsPorts | None = None
    scrape_interval: float = 1.0
    rule_files: Sequence[Path] = (ALERT_RULES,)
    # More /metrics endpoints to scrape: (host:port, component, pod), e.g. an operator.
    extra_scrape_targets: Sequence[tuple[str, str, str]] = ()

    def resolved_secrets(self) -> dict[str, str]:
        if self.secrets is not None:
            return dict(self.secrets)
        from roomgate_tools.devenv import dev_secrets

        return dev_secrets()


def gateway_service_credential() -> tuple[str, str]:
    """The gateways' credential for escalation, as the chart makes it: a fresh API key of
    service "gateway" (ROOMGATE_ESCALATION_API_KEY) and auth's record of it, which holds
    only its digest (a ROOMGATE_SERVICE_KEYS entry)."""
    key = new_api_key()
    return key, f"gateway:escalation={api_key_digest(key)}"


# ------------------------------------------------------------------------- readiness
def http_status(url: str, timeout: float = 1.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def http_text(url: str, timeout: float = 1.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            return str(response.read().decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None


def _http_ok(url: str) -> bool:
    return http_status(url) == 200


def grpc_serving(address: str, timeout: float = 1.0) -> bool:
    """The gRPC server at ``address`` answers the standard health check with SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def haproxy_servers(lb_port: int) -> dict[str, str]:
    """``{server name: status}`` of the gateways backend, from HAProxy's CSV stats."""
    text = http_text(f"http://127.0.0.1:{lb_port}{STATS_PATH};csv")
    if not text:
        return {}
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    return {
        row["svname"]: row["status"]
        for row in rows
        if row.get("pxname") == "gateways" and row.get("svname") not in ("BACKEND", "FRONTEND")
    }


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


# --------------------------------------------------------------------------- HAProxy
def _haproxy_maxconn() -> int:
    """HAProxy refuses to start when maxconn needs more descriptors than it may open."""
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 20000
    return max(256, min(20000, (soft - 100) // 2))


def haproxy_config(
    ports: StackPorts,
    gateway_ids: Sequence[str],
    *,
    own_limits: bool = False,
    bind: str = "127.0.0.1",
    addresses: Sequence[str] = (),
) -> str:
    """HAProxy in front of the gateways, as close to the chart's ingress as HAProxy gets:
    cookie affinity (inserted on the first response, the 101 of a WebSocket included),
    WebSocket-long tunnel timeouts, readiness checks on /readyz, X-Forwarded-For.

    ``own_limits``: no maxconn, HAProxy derives it from its own descriptor limit (in a
    container: the engine's, which this process cannot see). ``addresses``: the gateways'
    host:port (default: 127.0.0.1 and ``ports.gateways``)."""
    targets = list(addresses) or [f"127.0.0.1:{port}" for port in ports.gateways]
    servers = "\n".join(
        f"    server {gid} {target} cookie {gid} check"
        for gid, target in zip(gateway_ids, targets, strict=True)
    )
    maxconn = "" if own_limits else f"\n    maxconn {_haproxy_maxconn()}"
    return f"""\
# Generated by `roomgate dev` (roomgate_tools/stack.py); rewritten at every start.
global
    log stdout format raw local0 info{maxconn}

defaults
    mode http
    log global
    # httplog without the query string: it carries the client's token (?token=).
    log-format "{HAPROXY_LOG_FORMAT}"
    option dontlognull
    option forwardfor
    # A client whose cookie names a gateway that is gone goes to another one (new cookie).
    option redispatch
    retries 2
    timeout connect 5s
    timeout http-request 10s
    timeout client 60s
    timeout server 60s
    # Upgraded WebSockets: proxy-read-timeout / proxy-send-timeout of the chart's ingress.
    timeout tunnel {WEBSOCKET_TIMEOUT}s
    timeout client-fin 30s
    timeout server-fin 30s

frontend roomgate
    bind {bind}:{ports.lb}
    stats enable
    stats uri {STATS_PATH}
    default_backend gateways

backend gateways
    balance roundrobin
    # ingress-nginx affinity: cookie, session-cookie-name {AFFINITY_COOKIE}.
    cookie {AFFINITY_COOKIE} insert indirect nocache httponly attr "Max-Age={AFFINITY_MAX_AGE}"
    option httpchk GET /readyz
    http-check expect status 200
    # A gateway busy with a reconnect storm answers late, not never: 3 s per check, as
    # the chart's readinessProbe (timeoutSeconds: 3), before a check counts as failed.
    timeout check 3s
    default-server inter 1s fastinter 500ms downinter 1s rise 1 fall 2
{servers}
"""


COMPOSE_GATEWAY_PORT = 8080


def compose_haproxy_config() -> str:
    """compose.yaml's HAProxy (tools/images/compose/haproxy.cfg): the local stack's, in
    front of the gateway containers by name on the compose network."""
    config = haproxy_config(
        StackPorts.default(),
        DEFAULT_GATEWAY_IDS,
        own_limits=True,
        bind="0.0.0.0",
        addresses=[f"{gid}:{COMPOSE_GATEWAY_PORT}" for gid in DEFAULT_GATEWAY_IDS],
    )
    header = (
        "# Generated by roomgate_tools.stack.compose_haproxy_config (checked by\n"
        "# tests/images/test_compose.py): the local stack's HAProxy, gateways by name."
    )
    return header + config[config.index("\n") :]


# ------------------------------------------------------------------------ components
@dataclass
class Component:
    name: str
    process: ManagedProcess
    ready: Callable[[], bool]
    stop_timeout: float = 10.0
    optional: bool = False
    address: str = ""

    @property
    def log_path(self) -> Path:
        return self.process.log_path


def _console_script(name: str) -> str | None:
    """The service's console script, next to this interpreter (the venv) or on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)


def _wait_or_kill(process: ManagedProcess, timeout: float) -> int | None:
    proc = process.proc
    if proc is None:
        return None
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()  # a container's goes through `docker kill`
        return proc.wait(5)


def _rotate(path: Path) -> None:
    if path.exists():
        path.replace(path.with_name(path.name + ".1"))


class LocalStack:
    """Start with ``start()`` (or ``with``), stop with ``stop()``; see the module docstring."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.ports = config.ports
        self.state_dir = config.state_dir
        self.log_dir = self.state_dir / "logs"
        self.secrets = config.resolved_secrets()
        self.layers: list[list[Component]] = []
        self.escalation_enabled = False
        self.stopped = False
        self.obs_ports = config.obs_ports or ObsPorts.free()
        self.jaeger = JaegerQuery(self.obs_ports.jaeger_query)
        self.prometheus = PrometheusAPI(self.obs_ports.prometheus)

    # -------------------------------------------------------------------- addresses
    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports.redis}/0"

    @property
    def lb_http(self) -> str:
        return f"http://127.0.0.1:{self.ports.lb}"

    def ws_url(self, token: str | None = None) -> str:
        base = f"ws://127.0.0.1:{self.ports.lb}/ws"
        return f"{base}?token={token}" if token else base

    @property
    def gateway_http(self) -> dict[str, str]:
        return {
            gid: f"http://127.0.0.1:{port}"
            for gid, port in zip(self.config.gateway_ids, self.ports.gateways, strict=True)
        }

    @property
    def components(self) -> list[Component]:
        return [c for layer in self.layers for c in layer]

    def component(self, name: str) -> Component:
        for c in self.components:
            if c.name == name:
                return c
        raise KeyError(name)

    def token(
        self,
        uid: str = "42",
        *,
        kind: str = "user",
        perms: Sequence[str] = ("view_system",),
        roles: Sequence[str] = (),
        ttl: int = 3600,
    ) -> str:
        """A token the stack's auth service accepts (the dev HS256 secret)."""
        return mint_token(self.secrets, uid, kind=kind, perms=perms, roles=roles, ttl=ttl)

    # ------------------------------------------------------------------------ start
    def _env(self, **values: object) -> dict[str, str]:
        env = {
            "PYTHONUNBUFFERED": "1",
            "ROOMGATE_REDIS_URL": self.redis_url,
            "ROOMGATE_LOG_LEVEL": self.config.log_level,
            "ROOMGATE_SHUTDOWN_GRACE": "3",
            **self.secrets,
            **self._otlp_env(),
            **self.config.extra_env,
        }
        env.update({f"ROOMGATE_{k.upper()}": str(v) for k, v in values.items()})
        return env

    def _otlp_env(self) -> dict[str, str]:
        if not self.config.observability:
            return {}
        return {
            "ROOMGATE_OTLP_ENDPOINT": f"http://127.0.0.1:{self.obs_ports.otlp}",
            # Spans reach Jaeger within half a second (the SDK's default batch delay is 5 s).
            "OTEL_BSP_SCHEDULE_DELAY": "500",
        }

    def _observability(self) -> list[Component]:
        """Jaeger and Prometheus (scraping every service started here), when configured."""
        if not self.config.observability:
            return []
        p, o = self.ports, self.obs_ports
        for gw in self.layers[-1]:  # two gateways, one service name: tell their spans apart
            gw.process.env["OTEL_RESOURCE_ATTRIBUTES"] = f"service.instance.id={gw.name}"
        log = self.log_dir / "jaeger.log"
        _rotate(log)
        jaeger = Component(
            "jaeger",
            jaeger_process(self.state_dir, o, log),
            self.jaeger.ready,
            address=self.jaeger.api,
        )
        targets = [
            ScrapeTarget(f"127.0.0.1:{port}", "gateway", gid)
            for gid, port in zip(self.config.gateway_ids, p.gateways, strict=True)
        ]
        targets += [
            ScrapeTarget(f"127.0.0.1:{p.auth_metrics}", "auth", "auth-0"),
            ScrapeTarget(f"127.0.0.1:{p.roomauthz_metrics}", "roomauthz", "roomauthz-0"),
        ]
        if self.escalation_enabled:
            targets.append(
                ScrapeTarget(f"127.0.0.1:{p.escalation_metrics}", "escalation", "escalation-0")
            )
        targets += [ScrapeTarget(a, c, pod) for a, c, pod in self.config.extra_scrape_targets]
        log = self.log_dir / "prometheus.log"
        _rotate(log)
        text = prometheus_config(
            targets,
            interval=self.config.scrape_interval,
            rule_files=[f for f in self.config.rule_files if f.exists()],
        )
        prometheus = Component(
            "prometheus",
            prometheus_process(self.state_dir, o.prometheus, text, log),
            self.prometheus.ready,
            address=self.prometheus.base,
        )
        return [jaeger, prometheus]

    def _service(
        self, name: str, script: str, ready: Callable[[], bool], address: str, **env: object
    ) -> Component:
        log = self.log_dir / f"{name}.log"
        _rotate(log)
        runtime = self.config.containers
        process: ManagedProcess
        if runtime is not None:
            svc = script.removeprefix("roomgate-")
            process = ContainerProcess(
                runtime, name, runtime.images[svc], log_path=log, env=self._env(**env)
            )
        else:
            path = _console_script(script)
            if path is None:
                raise StackError(f"{script} is not installed; run `make setup`")
            process = ManagedProcess([path], log_path=log, env=self._env(**env), detached=True)
        return Component(name, process, ready, address=address)

    def _redis(self) -> ManagedProcess:
        p, cfg, runtime = self.ports, self.config, self.config.containers
        if runtime is None:
            redis = RedisProcess(self.state_dir / "redis", port=p.redis, aof=cfg.aof)
            redis.log_path = self.log_dir / "redis.log"
            _rotate(redis.log_path)
            redis.detached = True
            return redis
        data = self.state_dir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        data.chmod(0o777)  # written by the container's user 999 (the chart's Redis user)
        log = self.log_dir / "redis.log"
        _rotate(log)
        argv = RedisProcess(data, port=p.redis, aof=cfg.aof).argv[1:]
        argv[argv.index("--dir") + 1] = "/data"
        return ContainerProcess(
            runtime,
            "redis",
            runtime.infra,
            log_path=log,
            args=["redis-server", *argv],
            user=REDIS_USER,
            mounts=[Mount(data, "/data", read_only=False)],
        )

    def _haproxy(self) -> ManagedProcess:
        p, cfg, runtime = self.ports, self.config, self.config.containers
        cfg_path = self.state_dir / "haproxy.cfg"
        cfg_path.write_text(haproxy_config(p, cfg.gateway_ids, own_limits=runtime is not None))
        lb_log = self.log_dir / "haproxy.log"
        _rotate(lb_log)
        if runtime is None:
            return ManagedProcess(
                [which("haproxy"), "-db", "-f", str(cfg_path)], log_path=lb_log, detached=True
            )
        cfg_path.chmod(0o644)
        return ContainerProcess(
            runtime,
            "haproxy",
            runtime.infra,
            log_path=lb_log,
            args=["haproxy", "-db", "-f", "/etc/roomgate/haproxy.cfg"],
            user=REDIS_USER,
            stop_signal=signal.SIGUSR1,
            init=True,
            mounts=[Mount(cfg_path, "/etc/roomgate/haproxy.cfg")],
        )

    def _build(self) -> None:
        p = self.ports
        cfg = self.config
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)

        redis_c = Component("redis", self._redis(), self._redis_ready, address=self.redis_url)

        auth_addr = f"127.0.0.1:{p.auth}"
        authz_addr = f"127.0.0.1:{p.roomauthz}"
        esc_addr = f"127.0.0.1:{p.escalation}"
        gateway_key, service_keys = gateway_service_credential()
        services = [
            self._service(
                "auth",
                "roomgate-auth",
                lambda: grpc_serving(auth_addr),
                auth_addr,
                listen=auth_addr,
                metrics_listen=f"127.0.0.1:{p.auth_metrics}",
                service_keys=service_keys,
            ),
            self._service(
                "roomauthz",
                "roomgate-roomauthz",
                lambda: grpc_serving(authz_addr),
                authz_addr,
                listen=authz_addr,
                metrics_listen=f"127.0.0.1:{p.roomauthz_metrics}",
            ),
        ]
        want_escalation = cfg.escalation
        if want_escalation is None:
            want_escalation = (
                cfg.containers is not None or _console_script("roomgate-escalation") is not None
            )
        if want_escalation:
            esc = self._service(
                "escalation",
                "roomgate-escalation",
                lambda: grpc_serving(esc_addr),
                esc_addr,
                escalation_listen=esc_addr,
                auth_addr=auth_addr,
                metrics_listen=f"127.0.0.1:{p.escalation_metrics}",
            )
            esc.optional = cfg.escalation is None
            services.append(esc)
        self.escalation_enabled = bool(want_escalation)

        lb_c = Component(
            "haproxy", self._haproxy(), self._lb_ready, stop_timeout=5, address=self.lb_http
        )

        gateways = []
        for gid, port in zip(cfg.gateway_ids, p.gateways, strict=True):
            url = f"http://127.0.0.1:{port}"
            env: dict[str, object] = {
                "listen": f"127.0.0.1:{port}",
                "gateway_id": gid,
                "auth_addr": auth_addr,
                "roomauthz_addr": authz_addr,
                "forwarded_allow_ips": "127.0.0.1",
                "drain_seconds": cfg.drain_seconds,
                "drain_waves": 2,
                "reconnect_jitter_ms": 500,
                # Every local client comes from 127.0.0.1 (X-Forwarded-For through HAProxy).
                "max_connections_per_ip": 1000,
            }
            if want_escalation:
                env["escalation_addr"] = esc_addr
                env["escalation_api_key"] = gateway_key
            component = self._service(
                gid,
                "roomgate-gateway",
                functools.partial(_http_ok, f"{url}/readyz"),
                url,
                **env,
            )
            component.process.env.update(cfg.gateway_env)
            component.stop_timeout = cfg.drain_seconds + 3 + 10
            if isinstance(component.process, ContainerProcess):
                component.process.stop_timeout = int(component.stop_timeout)
            gateways.append(component)

        self.layers = [[redis_c], services, [lb_c], gateways]
        obs = self._observability()
        if obs:  # started with the services; stopped after them (their spans flush)
            self.layers.insert(1, obs)

    def _redis_ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.ports.redis), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _lb_ready(self) -> bool:
        status = haproxy_servers(self.ports.lb)
        return bool(status) and all(s == "UP" for s in status.values())

    def start(
        self, timeout: float = 60.0, progress: Callable[[str], None] | None = None
    ) -> LocalStack:
        """Start every process and wait until each one is ready; on any failure stop what
        was started and raise ``StackError`` with the log tail of the culprit."""
        busy = self.ports.busy()
        if self.config.observability:
            busy += _busy(self.obs_ports.items())
        if busy:
            names = ", ".join(f"{name} {port}" for name, port in busy)
            raise StackError(
                f"ports already in use: {names} (another `roomgate dev`? "
                "use --base-port N or --free-ports)"
            )
        say = progress or (lambda _msg: None)
        deadline = time.monotonic() + timeout
        try:
            self._build()
            redis = self.layers[0][0]
            redis.process.start()
            self._wait([redis], deadline, say)
            rest = [c for layer in self.layers[1:] for c in layer]
            for c in rest:
                c.process.start()
            self._wait(rest, deadline, say)
        except ProcessError as exc:  # a missing binary, redis-server not listening
            self.stop()
            raise StackError(str(exc)) from None
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, pending: list[Component], deadline: float, say: Callable[[str], None]) -> None:
        waiting = list(pending)
        while waiting:
            late = time.monotonic() > deadline
            for c in list(waiting):
                exited = not c.process.running
                if not exited and c.ready():
                    say(f"{c.name} ready ({c.address})")
                    waiting.remove(c)
                elif (exited or late) and c.optional:
                    what = "exited while starting" if exited else "not ready in time"
                    say(f"{c.name} {what}; going on without it:\n{log_tail(c.log_path)}")
                    waiting.remove(c)
                    waiting += [r for r in self._drop(c) if r not in waiting]
                elif exited:
                    code = c.process.proc.returncode if c.process.proc else None
                    raise StackError(
                        f"{c.name} exited with {code} while starting; "
                        f"last lines of {c.log_path}:\n{log_tail(c.log_path)}"
                    )
            if waiting and late:
                details = "\n".join(
                    f"--- {c.name} ({c.log_path}):\n{log_tail(c.log_path, 15)}" for c in waiting
                )
                names = ", ".join(c.name for c in waiting)
                raise StackError(f"not ready in time: {names}\n{details}")
            if waiting:
                time.sleep(0.1)

    def _drop(self, component: Component) -> list[Component]:
        """Forget an optional component that did not come up (escalation); returns the
        components restarted without it (to be waited for again)."""
        component.process.stop(2)
        for layer in self.layers:
            if component in layer:
                layer.remove(component)
        restarted = []
        if component.name == "escalation":
            self.escalation_enabled = False
            for gw in self.layers[-1]:
                gw.process.env.pop("ROOMGATE_ESCALATION_ADDR", None)
                if gw.process.proc is not None:  # started with the address: restart it
                    gw.process.signal(signal.SIGTERM)
                    _wait_or_kill(gw.process, gw.stop_timeout)
                    gw.process.start()
                    restarted.append(gw)
        return restarted

    # ------------------------------------------------------------------------- run
    def dead(self) -> Component | None:
        """The first component that exited while it should be running."""
        if self.stopped:
            return None
        for c in self.components:
            if c.process.proc is not None and not c.process.running:
                return c
        return None

    def stop(self) -> dict[str, int | None]:
        """Stop in reverse layer order (each layer at once: one SIGTERM, wait, SIGKILL when
        late); returns every exit code. Idempotent.

        Exactly one SIGTERM: a second one makes a draining gateway close every client at
        once instead of in waves."""
        self.stopped = True
        codes: dict[str, int | None] = {}
        for layer in reversed(self.layers):
            for c in layer:
                c.process.signal(signal.SIGTERM)
            for c in layer:
                codes[c.name] = _wait_or_kill(c.process, c.stop_timeout)
        if self.config.containers is not None:
            self.config.containers.remove_all()
        return codes

    def kill(self) -> None:
        """SIGKILL everything now (a second Ctrl-C)."""
        for c in self.components:
            proc = c.process.proc
            if isinstance(c.process, ContainerProcess):
                c.process.kill()
            elif proc is not None and proc.poll() is None:
                with contextlib.suppress(OSError):
                    os.kill(proc.pid, signal.SIGKILL)

    def __enter__(self) -> LocalStack:
        if not self.layers:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ------------------------------------------------------------------------------- tokens
def mint_token(
    secrets: Mapping[str, str],
    uid: str,
    *,
    kind: str = "user",
    perms: Sequence[str] = (),
    roles: Sequence[str] = (),
    ttl: int = 3600,
) -> str:
    """Sign a token like ``roomgate token`` does, with the auth service's own minting code."""
    from roomgate_auth.tokens import KeyRing, TokenPolicy, hs256_key, hs256_signing_key
    from roomgate_common.identity import Principal, PrincipalKind

    secret = secrets["ROOMGATE_JWT_HS256_SECRET"]
    policy = TokenPolicy(
        issuer=secrets["ROOMGATE_JWT_ISSUER"],
        audience=secrets["ROOMGATE_JWT_AUDIENCE"],
        keys=KeyRing.build([], hs256_key(secret)),
        signing=hs256_signing_key(secret),
    )
    principal = Principal(
        kind=PrincipalKind(kind), id=uid, permissions=tuple(perms), roles=tuple(roles)
    )
    token, _ = policy.mint(principal, ttl)
    return token


@contextlib.contextmanager
def running(config: StackConfig, timeout: float = 60.0) -> Iterator[LocalStack]:
    """``with running(config) as stack:`` — started, and stopped whatever happens."""
    stack = LocalStack(config)
    stack.start(timeout)
    try:
        yield stack
    finally:
        stack.stop()


__all__ = [
    "AFFINITY_COOKIE",
    "Component",
    "LocalStack",
    "ProcessError",
    "StackConfig",
    "StackError",
    "StackPorts",
    "haproxy_config",
    "mint_token",
    "running",
]
