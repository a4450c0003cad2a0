"""The typed settings base: one object per service, read once from the environment at start.

Every variable is ``ROOMGATE_<FIELD>``; a missing or invalid value raises
``ConfigurationError`` naming the variable.
"""

from __future__ import annotations

from typing import Self, TypeVar

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from roomgate_common.errors import ConfigurationError
from roomgate_common.history import DEFAULT_HISTORY, HistoryPolicy

ENV_PREFIX = "ROOMGATE_"

T = TypeVar("T", bound="ServiceSettings")


class ServiceSettings(BaseSettings):
    """Fields every service has."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    log_level: str = "INFO"
    # host:port of the Prometheus endpoint; port 0 picks a free port.
    metrics_listen: str = "127.0.0.1:0"
    # OTLP/gRPC endpoint (e.g. http://otel-collector:4317); empty disables export.
    otlp_endpoint: str = ""
    # Seconds the service waits for in-flight work after SIGTERM.
    shutdown_grace: float = 10.0
    # Room history bounds by room pattern (see roomgate_common.history); every publisher
    # and gateway must use the same value.
    history: str = DEFAULT_HISTORY

    # Offline mailboxes (user-{id} rooms): most messages kept per user, and how long an
    # untouched mailbox lives (seconds). See roomgate_common.mailbox.
    mailbox_cap: int = 1000
    mailbox_ttl: int = 7 * 86400
    # Durable rooms (comma-separated shell patterns, e.g. "alerts,task-*"): every message
    # there requires an ack, so each user it is delivered to keeps it in their mailbox until
    # acked (users offline at publish time recover it from the room's history).
    durable_rooms: str = ""

    @field_validator("history")
    @classmethod
    def _valid_history(cls, value: str) -> str:
        HistoryPolicy.parse(value)
        return value

    @property
    def history_policy(self) -> HistoryPolicy:
        return HistoryPolicy.parse(self.history)

    @classmethod
    def from_env(cls, **overrides: object) -> Self:
        """Read the settings; overrides (tests, CLI flags) win over the environment."""
        try:
            return cls(**overrides)  # type: ignore[arg-type]
        except ValidationError as exc:
            problems = [
                f"{ENV_PREFIX}{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
                for err in exc.errors()
            ]
            raise ConfigurationError("invalid settings: " + "; ".join(problems)) from None


def split_hostport(value: str) -> tuple[str, int]:
    """'127.0.0.1:8080' -> ('127.0.0.1', 8080); '[::1]:80' -> ('::1', 80)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigurationError(f"expected host:port, got {value!r}")
    return host.strip("[]"), int(port)
