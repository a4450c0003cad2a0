"""AuthSettings: the environment it reads, its defaults, and configuration errors that name
the variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from roomgate_auth.settings import AuthSettings
from roomgate_common.errors import ConfigurationError

from .conftest import HS256_SECRET, Keys, claims, signed


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean ROOMGATE_* environment with only issuer and audience set."""
    for name in [k for k in os.environ if k.startswith("ROOMGATE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ROOMGATE_JWT_ISSUER", "iss")
    monkeypatch.setenv("ROOMGATE_JWT_AUDIENCE", "aud")
    return monkeypatch


def test_defaults_and_environment(env: pytest.MonkeyPatch) -> None:
    """Every field comes from ROOMGATE_<FIELD>, with the documented defaults."""
    env.setenv("ROOMGATE_JWT_HS256_SECRET", HS256_SECRET)
    env.setenv("ROOMGATE_MAX_TTL", "7200")
    settings = AuthSettings.from_env()
    assert (settings.listen, settings.leeway, settings.default_ttl) == ("127.0.0.1:50051", 10, 3600)
    assert (settings.max_ttl, settings.max_token_bytes) == (7200, 8192)
    assert settings.max_batch == 1000
    assert settings.jwt_hs256_secret.get_secret_value() == HS256_SECRET
    assert HS256_SECRET not in repr(settings)
    policy = settings.build_policy()
    assert (policy.issuer, policy.audience, policy.max_ttl) == ("iss", "aud", 7200)
    assert policy.signing is not None
    assert policy.signing.algorithm == "HS256"


def test_public_keys_as_directory_or_list(env: pytest.MonkeyPatch, keys: Keys) -> None:
    """ROOMGATE_JWT_PUBLIC_KEYS takes a directory of <kid>.pem or kid=path pairs."""
    env.setenv("ROOMGATE_JWT_PUBLIC_KEYS", str(keys.public_dir))
    ring = AuthSettings.from_env().build_policy().keys
    assert set(ring.by_kid) == {p.kid for p in keys.all}
    assert ring.default is None  # several keys, no HS256: every token needs a kid
    pem = keys.public_dir
    listed = f"a={pem / (keys.rsa1.kid + '.pem')}, b={pem / (keys.ed2.kid + '.pem')}"
    env.setenv("ROOMGATE_JWT_PUBLIC_KEYS", listed)
    policy = AuthSettings.from_env().build_policy()
    assert set(policy.keys.by_kid) == {"a", "b"}
    assert policy.signing is None
    assert policy.verify(signed(keys.ed2, claims(iss="iss", aud="aud"), kid="b")).id == "42"


SECRET = {"ROOMGATE_JWT_HS256_SECRET": HS256_SECRET}


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({}, "ROOMGATE_JWT_HS256_SECRET"),
        ({"ROOMGATE_JWT_HS256_SECRET": "short"}, "ROOMGATE_JWT_HS256_SECRET"),
        ({"ROOMGATE_JWT_PUBLIC_KEYS": "/nonexistent/dir"}, "ROOMGATE_JWT_PUBLIC_KEYS"),
        ({"ROOMGATE_JWT_PUBLIC_KEYS": "k=/nonexistent.pem"}, "ROOMGATE_JWT_PUBLIC_KEYS"),
        ({"ROOMGATE_JWKS_FILE": "/nonexistent.json"}, "ROOMGATE_JWKS_FILE"),
        ({"ROOMGATE_JWT_SIGNING_KEY_FILE": "/x.pem"}, "ROOMGATE_JWT_SIGNING_KID"),
        ({**SECRET, "ROOMGATE_DEFAULT_TTL": "90000"}, "ROOMGATE_DEFAULT_TTL"),
        ({**SECRET, "ROOMGATE_LEEWAY": "-1"}, "ROOMGATE_LEEWAY"),
        ({**SECRET, "ROOMGATE_MAX_TTL": "soon"}, "ROOMGATE_MAX_TTL"),
    ],
)  # fmt: skip
def test_configuration_errors_name_the_variable(
    env: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    """Every configuration problem is a ConfigurationError naming its variable."""
    for name, value in variables.items():
        env.setenv(name, value)
    with pytest.raises(ConfigurationError, match=named):
        AuthSettings.from_env().build_policy()


def test_missing_issuer_is_named(env: pytest.MonkeyPatch) -> None:
    """ROOMGATE_JWT_ISSUER has no default."""
    env.delenv("ROOMGATE_JWT_ISSUER")
    with pytest.raises(ConfigurationError, match="ROOMGATE_JWT_ISSUER"):
        AuthSettings.from_env()


def test_a_public_key_file_that_is_no_key_is_refused(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A PEM file that holds no usable key is a configuration error, not a silent skip."""
    (tmp_path / "junk.pem").write_text(
        "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n"
    )
    env.setenv("ROOMGATE_JWT_PUBLIC_KEYS", str(tmp_path))
    with pytest.raises(ConfigurationError, match="ROOMGATE_JWT_PUBLIC_KEYS"):
        AuthSettings.from_env().build_policy()


def test_max_batch_from_the_environment(env: pytest.MonkeyPatch) -> None:
    """ROOMGATE_MAX_BATCH sets the AuthenticateBatch limit; 0 is refused, naming it."""
    env.setenv("ROOMGATE_JWT_HS256_SECRET", HS256_SECRET)
    env.setenv("ROOMGATE_MAX_BATCH", "64")
    assert AuthSettings.from_env().max_batch == 64
    env.setenv("ROOMGATE_MAX_BATCH", "0")
    with pytest.raises(ConfigurationError, match="ROOMGATE_MAX_BATCH"):
        AuthSettings.from_env()
