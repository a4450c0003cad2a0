"""The auth service's settings (``ROOMGATE_*``), read once at start, and the token policy
built from them. Every problem raises ``ConfigurationError`` naming the variable.

Verification keys come from any mix of:

* ``ROOMGATE_JWT_HS256_SECRET``: a shared secret (at least 32 bytes); tokens without a ``kid``
  are checked with it.
* ``ROOMGATE_JWT_PUBLIC_KEYS``: a directory whose ``<kid>.pem`` files are public keys, or a
  comma-separated list ``kid=/path/key.pem,kid2=/path/other.pem`` (several at once: rotation).
* ``ROOMGATE_JWKS_FILE``: a JWKS document (``{"keys": [...]}``, every key with its ``kid``).
* ``ROOMGATE_JWT_SIGNING_KEY_FILE`` + ``ROOMGATE_JWT_SIGNING_KID``: the private key tokens are
  issued with (its public half is trusted too). Without it tokens are issued with HS256.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from jwt import PyJWK
from pydantic import Field, SecretStr
from roomgate_common.errors import ConfigurationError
from roomgate_common.identity import Principal, PrincipalKind
from roomgate_common.settings import ServiceSettings

from roomgate_auth.tokens import (
    KeyRing,
    SigningKey,
    TokenPolicy,
    hs256_key,
    hs256_signing_key,
    is_api_key_digest,
    keys_from_jwks,
    public_key_from_pem,
    signing_key_from_pem,
)

P = ParamSpec("P")
T = TypeVar("T")


class AuthSettings(ServiceSettings):
    """Environment of ``roomgate-auth`` (plus the common ``ROOMGATE_REDIS_URL`` etc.)."""

    listen: str = "127.0.0.1:50051"
    jwt_issuer: str = Field(min_length=1)
    jwt_audience: str = Field(min_length=1)
    jwt_hs256_secret: SecretStr = SecretStr("")
    jwt_public_keys: str = ""
    jwks_file: str = ""
    jwt_signing_key_file: str = ""
    jwt_signing_kid: str = ""
    # "Bearer <admin_secret>" unlocks the admin RPCs; empty refuses them all.
    admin_secret: SecretStr = SecretStr("")
    # API keys of services, as comma-separated "<service id>:<perm>+<perm>=<sha256 hex of
    # the key>" (e.g. "gateway:escalation=9f86d0…"): IssueToken with such a key returns a
    # token of that service principal (how the gateway gets its escalation credential).
    # Only digests are configured here; the key itself is the service's secret.
    service_keys: SecretStr = SecretStr("")
    # Seconds of clock skew forgiven on exp, nbf and iat.
    leeway: float = Field(10.0, ge=0, le=300)
    # Token lifetimes in seconds: the default and the cap (also the longest lifetime accepted).
    default_ttl: int = Field(3600, gt=0)
    max_ttl: int = Field(86400, gt=0)
    # Longer tokens are rejected as malformed before any parsing.
    max_token_bytes: int = Field(8192, ge=512, le=65536)
    # Most tokens per AuthenticateBatch call; more is INVALID_ARGUMENT. (Keep the gateways'
    # ROOMGATE_AUTH_BATCH_MAX at or below it.)
    max_batch: int = Field(1000, ge=1, le=100_000)
    # Seconds between Redis pings; while Redis is unreachable the health status of
    # roomgate.auth.v1.AuthService is NOT_SERVING ("" stays SERVING: liveness). 0: no pings.
    redis_check_interval: float = Field(2.0, ge=0)

    def service_principals(self) -> dict[str, Principal]:
        """The service principal of each configured key digest (ConfigurationError naming
        ROOMGATE_SERVICE_KEYS when an entry is malformed)."""
        found: dict[str, Principal] = {}
        spec = self.service_keys.get_secret_value()
        for item in filter(None, (part.strip() for part in spec.split(","))):
            who, _, digest = item.rpartition("=")
            sid, _, perms = who.partition(":")
            principal = Principal(
                kind=PrincipalKind.SERVICE,
                id=sid,
                permissions=tuple(p for p in perms.split("+") if p),
            )
            if not is_api_key_digest(digest) or principal.problems():
                raise ConfigurationError(
                    "ROOMGATE_SERVICE_KEYS: expected <service id>:<perm>+<perm>=<sha256 hex>, "
                    f"got an entry for {sid[:64]!r}"
                )
            found[digest] = principal
        return found

    def build_policy(self) -> TokenPolicy:
        """The token policy these settings describe (reads the key files)."""
        if self.default_ttl > self.max_ttl:
            raise ConfigurationError(
                "ROOMGATE_DEFAULT_TTL: must not exceed ROOMGATE_MAX_TTL "
                f"({self.default_ttl} > {self.max_ttl})"
            )
        secret = self.jwt_hs256_secret.get_secret_value()
        hs256 = _configured("ROOMGATE_JWT_HS256_SECRET", hs256_key, secret) if secret else None
        keys = [*self._public_keys(), *self._jwks()]
        signing = self._signing_key()
        if signing is not None:
            public = signing.public()
            if public is not None:
                keys.append(public)
        elif hs256 is not None:
            signing = hs256_signing_key(secret)
        if hs256 is None and not keys:
            raise ConfigurationError(
                "no verification key: set ROOMGATE_JWT_HS256_SECRET, ROOMGATE_JWT_PUBLIC_KEYS, "
                "ROOMGATE_JWKS_FILE or ROOMGATE_JWT_SIGNING_KEY_FILE"
            )
        ring = _configured("ROOMGATE_JWT_PUBLIC_KEYS", KeyRing.build, keys, hs256)
        return TokenPolicy(
            issuer=self.jwt_issuer,
            audience=self.jwt_audience,
            keys=ring,
            signing=signing,
            leeway=self.leeway,
            default_ttl=self.default_ttl,
            max_ttl=self.max_ttl,
            max_token_bytes=self.max_token_bytes,
        )

    def _public_keys(self) -> list[PyJWK]:
        spec = self.jwt_public_keys.strip()
        if not spec:
            return []
        var = "ROOMGATE_JWT_PUBLIC_KEYS"
        entries: list[tuple[str, Path]] = []
        if "=" not in spec and Path(spec).is_dir():
            entries = [(p.stem, p) for p in sorted(Path(spec).glob("*.pem"))]
            if not entries:
                raise ConfigurationError(f"{var}: no *.pem file in {spec}")
        else:
            for item in filter(None, (part.strip() for part in spec.split(","))):
                kid, sep, path = item.partition("=")
                if not sep or not kid.strip() or not path.strip():
                    raise ConfigurationError(f"{var}: expected a directory or kid=path,...")
                entries.append((kid.strip(), Path(path.strip())))
        return [
            _configured(var, public_key_from_pem, kid, _read(var, path)) for kid, path in entries
        ]

    def _jwks(self) -> list[PyJWK]:
        if not self.jwks_file:
            return []
        var = "ROOMGATE_JWKS_FILE"
        return _configured(var, keys_from_jwks, _read(var, Path(self.jwks_file)))

    def _signing_key(self) -> SigningKey | None:
        if not self.jwt_signing_key_file:
            return None
        if not self.jwt_signing_kid:
            raise ConfigurationError(
                "ROOMGATE_JWT_SIGNING_KID: required with ROOMGATE_JWT_SIGNING_KEY_FILE"
            )
        var = "ROOMGATE_JWT_SIGNING_KEY_FILE"
        pem = _read(var, Path(self.jwt_signing_key_file))
        return _configured(var, signing_key_from_pem, self.jwt_signing_kid, pem)


def _read(var: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{var}: cannot read {path}: {exc.strerror}") from None


def _configured(var: str, build: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``build(*args)``, with its ValueError reported against the variable ``var``."""
    try:
        return build(*args, **kwargs)
    except ValueError as exc:
        raise ConfigurationError(f"{var}: {exc}") from None
