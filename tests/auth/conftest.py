"""Fixtures of the auth tests: real key pairs (RSA and Ed25519, two of each for rotation),
token forging helpers, and a real auth gRPC server on 127.0.0.1:0 against the test Redis."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from roomgate.auth.v1 import auth_pb2, auth_pb2_grpc
from roomgate_auth.server import AuthServer
from roomgate_auth.settings import AuthSettings

ISSUER = "https://issuer.test"
AUDIENCE = "roomgate"
HS256_SECRET = "test-hs256-secret-" + "s" * 40
ADMIN_SECRET = "test-admin-secret-0123456789"
OTHER_SECRET = "another-hs256-secret-" + "o" * 40


@dataclass(frozen=True)
class KeyPair:
    kid: str
    private: Any
    alg: str

    @property
    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@dataclass(frozen=True)
class Keys:
    rsa1: KeyPair
    rsa2: KeyPair
    ed1: KeyPair
    ed2: KeyPair
    public_dir: Path
    root: Path

    @property
    def all(self) -> list[KeyPair]:
        return [self.rsa1, self.rsa2, self.ed1, self.ed2]


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """Four key pairs; their public halves as ``<kid>.pem`` in one directory."""
    root = tmp_path_factory.mktemp("keys")
    public_dir = root / "public"
    public_dir.mkdir()
    pairs = Keys(
        rsa1=KeyPair("rsa-2026-01", rsa.generate_private_key(65537, 2048), "RS256"),
        rsa2=KeyPair("rsa-2026-02", rsa.generate_private_key(65537, 2048), "RS256"),
        ed1=KeyPair("ed-2026-01", ed25519.Ed25519PrivateKey.generate(), "EdDSA"),
        ed2=KeyPair("ed-2026-02", ed25519.Ed25519PrivateKey.generate(), "EdDSA"),
        public_dir=public_dir,
        root=root,
    )
    for pair in pairs.all:
        (public_dir / f"{pair.kid}.pem").write_bytes(pair.public_pem)
        (root / f"{pair.kid}.key").write_bytes(pair.private_pem)
    return pairs


def claims(**changes: Any) -> dict[str, Any]:
    """A valid claim set for user 42; ``name=None`` drops a claim."""
    now = time.time()
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "42",
        "kind": "user",
        "sid": "7",
        "iat": int(now),
        "exp": int(now) + 600,
        "jti": "jti-" + hashlib.sha256(str(now).encode()).hexdigest()[:16],
        "roles": ["operator"],
        "perms": ["view_system"],
        "groups": ["3"],
        "teams": ["7"],
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(
    header: dict[str, Any], payload: dict[str, Any], sign: Callable[[bytes], bytes]
) -> str:
    """A compact JWS built by hand (for tokens PyJWT refuses to produce)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def hs256(payload: dict[str, Any], secret: str | bytes = HS256_SECRET, **header: Any) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return raw_token(
        {"alg": "HS256", "typ": "JWT", **header},
        payload,
        lambda data: hmac.new(key, data, hashlib.sha256).digest(),
    )


def signed(pair: KeyPair, payload: dict[str, Any], **header: Any) -> str:
    """``payload`` signed with ``pair`` (kid header = its kid unless given)."""
    return jwt.encode(
        payload, pair.private, algorithm=pair.alg, headers={"kid": pair.kid, **header}
    )


def settings_for(redis_url: str, keys: Keys, **changes: Any) -> AuthSettings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "listen": "127.0.0.1:0",
        "metrics_listen": "",  # no /metrics thread: its shutdown polls for 0.5 s
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwt_hs256_secret": HS256_SECRET,
        "jwt_public_keys": str(keys.public_dir),
        "jwks_file": "",
        "jwt_signing_key_file": "",
        "jwt_signing_kid": "",
        "admin_secret": ADMIN_SECRET,
        "leeway": 10,
        "default_ttl": 3600,
        "max_ttl": 86400,
        "shutdown_grace": 1.0,
    }
    values.update(changes)
    return AuthSettings.from_env(**values)


@dataclass
class Running:
    server: AuthServer
    channel: grpc.aio.Channel
    stub: auth_pb2_grpc.AuthServiceStub

    async def authenticate(self, token: str) -> auth_pb2.Principal:
        return (await self.stub.Authenticate(auth_pb2.AuthenticateRequest(token=token))).principal

    async def issue(self, principal: auth_pb2.Principal, ttl: int = 0) -> str:
        response = await self.stub.IssueToken(
            auth_pb2.IssueTokenRequest(principal=principal, ttl_seconds=ttl), metadata=ADMIN
        )
        return response.token


ADMIN = (("authorization", f"Bearer {ADMIN_SECRET}"),)


@asynccontextmanager
async def running(settings: AuthSettings) -> AsyncIterator[Running]:
    """An AuthServer started in-process, a channel to it; both closed at the end."""
    server = AuthServer(settings)
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Running(server, channel, auth_pb2_grpc.AuthServiceStub(channel))
    finally:
        await channel.close()
        await server.stop()


@pytest.fixture
async def auth(redis_url: str, keys: Keys) -> AsyncIterator[Running]:
    """The auth service (HS256 secret + the four public keys) on 127.0.0.1:0."""
    async with running(settings_for(redis_url, keys)) as service:
        yield service


def user(uid: str = "42", **fields: Any) -> auth_pb2.Principal:
    return auth_pb2.Principal(kind=auth_pb2.PRINCIPAL_KIND_USER, id=uid, **fields)
