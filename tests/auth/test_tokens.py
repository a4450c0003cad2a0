"""The pure token policy, tested with values: every rejection reason, rotation, minting."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm
from roomgate_auth.errors import AuthError, CannotIssue, InvalidRequest, Reason
from roomgate_auth.tokens import (
    SESSION_ID_BOUND,
    KeyRing,
    TokenPolicy,
    hs256_key,
    hs256_signing_key,
    keys_from_jwks,
    public_key_from_pem,
    signing_key_from_pem,
)
from roomgate_common.identity import MAX_ID, Principal, PrincipalKind, is_canonical_id

from .conftest import (
    AUDIENCE,
    HS256_SECRET,
    ISSUER,
    OTHER_SECRET,
    Keys,
    b64,
    claims,
    hs256,
    raw_token,
    signed,
)

ROOT = Path(__file__).resolve().parents[2]


def make_policy(pairs: Keys, **changes: Any) -> TokenPolicy:
    ring = KeyRing.build(
        [public_key_from_pem(p.kid, p.public_pem) for p in pairs.all], hs256_key(HS256_SECRET)
    )
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "keys": ring,
        "signing": hs256_signing_key(HS256_SECRET),
        "leeway": 10,
        "max_ttl": 86400,
    }
    values.update(changes)
    return TokenPolicy(**values)


@pytest.fixture(scope="module")
def policy(keys: Keys) -> TokenPolicy:
    return make_policy(keys)


def tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    body = json.loads(jwt.utils.base64url_decode(payload))
    body["sub"] = "1"
    return f"{header}.{b64(json.dumps(body).encode())}.{signature}"


def now() -> int:
    return int(time.time())


# Each case: (name, token factory, expected reason).
FORGED: list[tuple[str, Callable[[Keys], str], Reason]] = [
    ("alg none", lambda k: raw_token({"alg": "none"}, claims(), lambda _: b""), Reason.ALGORITHM_NOT_ALLOWED),
    ("alg None with kid", lambda k: raw_token({"alg": "None", "kid": k.rsa1.kid}, claims(), lambda _: b""), Reason.ALGORITHM_NOT_ALLOWED),
    ("HS256 keyed with RSA public PEM, kid of the RSA key", lambda k: hs256(claims(), k.rsa1.public_pem, kid=k.rsa1.kid), Reason.ALGORITHM_NOT_ALLOWED),
    ("HS256 keyed with RSA public PEM, no kid", lambda k: hs256(claims(), k.rsa1.public_pem), Reason.BAD_SIGNATURE),
    ("HS256 keyed with Ed25519 public PEM, kid of that key", lambda k: hs256(claims(), k.ed1.public_pem, kid=k.ed1.kid), Reason.ALGORITHM_NOT_ALLOWED),
    ("RS256 token naming an Ed25519 kid", lambda k: signed(k.rsa1, claims(), kid=k.ed1.kid), Reason.ALGORITHM_NOT_ALLOWED),
    ("EdDSA token without kid (default key is HS256)", lambda k: jwt.encode(claims(), k.ed1.private, algorithm="EdDSA"), Reason.ALGORITHM_NOT_ALLOWED),
    ("HS512 with the right secret", lambda k: raw_token({"alg": "HS512"}, claims(), lambda d: hmac.new(HS256_SECRET.encode(), d, hashlib.sha512).digest()), Reason.ALGORITHM_NOT_ALLOWED),
    ("tampered payload (HS256)", lambda k: tamper(hs256(claims())), Reason.BAD_SIGNATURE),
    ("tampered payload (RS256)", lambda k: tamper(signed(k.rsa1, claims())), Reason.BAD_SIGNATURE),
    ("tampered payload (EdDSA)", lambda k: tamper(signed(k.ed1, claims())), Reason.BAD_SIGNATURE),
    ("signed with another secret", lambda k: hs256(claims(), OTHER_SECRET), Reason.BAD_SIGNATURE),
    ("wrong kid: rsa1 signs, header names rsa2", lambda k: signed(k.rsa1, claims(), kid=k.rsa2.kid), Reason.BAD_SIGNATURE),
    ("wrong kid: ed2 signs, header names ed1", lambda k: signed(k.ed2, claims(), kid=k.ed1.kid), Reason.BAD_SIGNATURE),
    ("unknown kid", lambda k: signed(k.rsa1, claims(), kid="rsa-1999-01"), Reason.UNKNOWN_KEY),
    ("HS256 with a kid nobody has", lambda k: hs256(claims(), kid="hs-old"), Reason.UNKNOWN_KEY),
    ("kid not a string", lambda k: hs256(claims(), kid=7), Reason.MALFORMED),
    ("expired beyond leeway", lambda k: hs256(claims(exp=now() - 30, iat=now() - 600)), Reason.EXPIRED),
    ("nbf in the future", lambda k: hs256(claims(nbf=now() + 120)), Reason.NOT_YET_VALID),
    ("iat in the future", lambda k: hs256(claims(iat=now() + 120, exp=now() + 700)), Reason.NOT_YET_VALID),
    ("wrong issuer", lambda k: hs256(claims(iss="https://evil.test")), Reason.WRONG_ISSUER),
    ("wrong audience", lambda k: hs256(claims(aud="someone-else")), Reason.WRONG_AUDIENCE),
    ("audience list without ours", lambda k: hs256(claims(aud=["a", "b"])), Reason.WRONG_AUDIENCE),
    ("missing exp", lambda k: hs256(claims(exp=None)), Reason.MISSING_CLAIM),
    ("missing sub", lambda k: hs256(claims(sub=None)), Reason.MISSING_CLAIM),
    ("missing iat", lambda k: hs256(claims(iat=None)), Reason.MISSING_CLAIM),
    ("missing jti", lambda k: hs256(claims(jti=None)), Reason.MISSING_CLAIM),
    ("missing iss", lambda k: hs256(claims(iss=None)), Reason.MISSING_CLAIM),
    ("missing aud", lambda k: hs256(claims(aud=None)), Reason.MISSING_CLAIM),
    ("missing kind", lambda k: hs256(claims(kind=None)), Reason.MISSING_CLAIM),
    ("missing sid of a user", lambda k: hs256(claims(sid=None)), Reason.MISSING_CLAIM),
    ("exp as a string", lambda k: hs256(claims(exp=str(now() + 600))), Reason.INVALID_CLAIM),
    ("exp as a boolean", lambda k: hs256(claims(exp=True)), Reason.INVALID_CLAIM),
    ("exp beyond float range", lambda k: hs256(claims(exp=10**400)), Reason.INVALID_CLAIM),
    ("lifetime above max_ttl", lambda k: hs256(claims(exp=now() + 2 * 86400)), Reason.INVALID_CLAIM),
    ("unknown kind", lambda k: hs256(claims(kind="admin")), Reason.INVALID_CLAIM),
    ("sub not a string", lambda k: hs256(claims(sub=42)), Reason.INVALID_CLAIM),
    ("sid not canonical", lambda k: hs256(claims(sid="07")), Reason.INVALID_CLAIM),
    ("sid as a number", lambda k: hs256(claims(sid=7)), Reason.INVALID_CLAIM),
    ("roles not a list", lambda k: hs256(claims(roles="admin")), Reason.INVALID_CLAIM),
    ("role with a space", lambda k: hs256(claims(roles=["a b"])), Reason.INVALID_CLAIM),
    ("group not canonical", lambda k: hs256(claims(groups=["03"])), Reason.INVALID_CLAIM),
    ("too many permissions", lambda k: hs256(claims(perms=[f"p{i}" for i in range(257)])), Reason.INVALID_CLAIM),
    ("jti with a slash", lambda k: hs256(claims(jti="a/b")), Reason.INVALID_CLAIM),
    ("service name with capitals", lambda k: hs256(claims(kind="service", sub="Alert")), Reason.INVALID_CLAIM),
    ("garbage", lambda k: "garbage", Reason.MALFORMED),
    ("empty", lambda k: "", Reason.MALFORMED),
    ("two segments", lambda k: "a.b", Reason.MALFORMED),
    ("dots only", lambda k: "..", Reason.MALFORMED),
    ("four segments", lambda k: hs256(claims()) + ".x", Reason.MALFORMED),
    ("non-ASCII", lambda k: "é" + hs256(claims()), Reason.MALFORMED),
    ("padded base64", lambda k: hs256(claims()).replace(".", "=.", 1), Reason.MALFORMED),
    ("header not JSON", lambda k: "bm90anNvbg." + hs256(claims()).split(".", 1)[1], Reason.MALFORMED),
    ("header a JSON list", lambda k: b64(b"[1]") + "." + hs256(claims()).split(".", 1)[1], Reason.MALFORMED),
    ("header without alg", lambda k: raw_token({"typ": "JWT"}, claims(), lambda _: b"sig"), Reason.MALFORMED),
    ("payload not JSON", lambda k: raw_token({"alg": "HS256"}, {}, lambda _: b"x").split(".")[0] + ".bm9wZQ.c2ln", Reason.BAD_SIGNATURE),
    ("unsupported crit header", lambda k: hs256(claims(), crit=["exp-ext"], **{"exp-ext": 1}), Reason.MALFORMED),
    ("huge token", lambda k: hs256(claims(roles=["r"] * 4000)), Reason.MALFORMED),
]  # fmt: skip

NON_CANONICAL_IDS = [
    "01",
    "0",
    "-1",
    "+1",
    "١٢",
    " 1",
    "1 ",
    "1\n",
    "1e3",
    "0x1",
    "1.0",
    "",
    "abc",
    "9" * 19,
    "9223372036854775808",
    "1" * 20,
    "٣",
]


@pytest.mark.parametrize(("name", "make", "reason"), FORGED, ids=[c[0] for c in FORGED])
def test_forged_tokens_are_rejected_with_their_reason(
    policy: TokenPolicy, keys: Keys, name: str, make: Callable[[Keys], str], reason: Reason
) -> None:
    """Each forged or broken token is rejected with exactly its reason."""
    with pytest.raises(AuthError) as caught:
        policy.verify(make(keys))
    assert caught.value.reason is reason, name
    assert str(caught.value) == reason.value


@pytest.mark.parametrize("sub", NON_CANONICAL_IDS)
@pytest.mark.parametrize("kind", ["user", "agent"])
def test_non_canonical_user_and_agent_ids_are_invalid(
    policy: TokenPolicy, kind: str, sub: str
) -> None:
    """User and agent ids must be canonical positive decimal integers."""
    with pytest.raises(AuthError) as caught:
        policy.verify(hs256(claims(kind=kind, sub=sub)))
    assert caught.value.reason is Reason.INVALID_CLAIM


def test_canonical_id_grammar() -> None:
    """Only ASCII digits without sign or leading zero, the value at most 2**63 - 1."""
    assert all(is_canonical_id(v) for v in ["1", "42", "9" * 18, "100", str(2**63 - 1)])
    assert not any(is_canonical_id(v) for v in [*NON_CANONICAL_IDS, 42, None])


def test_valid_hs256_token_gives_the_principal(policy: TokenPolicy) -> None:
    """A valid HS256 token yields every claim in the principal."""
    token_claims = claims()
    principal = policy.verify(hs256(token_claims))
    assert principal == Principal(
        kind=PrincipalKind.USER,
        id="42",
        session_id="7",
        roles=("operator",),
        permissions=("view_system",),
        group_ids=("3",),
        team_ids=("7",),
        token_id=token_claims["jti"],
        issued_at=float(token_claims["iat"]),
        expires_at=token_claims["exp"],
    )


def test_expired_within_leeway_is_accepted(policy: TokenPolicy) -> None:
    """A token expired a few seconds ago (less than the leeway) is still accepted."""
    assert policy.verify(hs256(claims(exp=now() - 5, iat=now() - 600))).id == "42"


def test_nbf_within_leeway_is_accepted(policy: TokenPolicy) -> None:
    """A not-before a few seconds ahead (clock skew) is forgiven."""
    assert policy.verify(hs256(claims(nbf=now() + 5))).id == "42"


def test_leeway_follows_the_policy_clock(keys: Keys) -> None:
    """Time checks use the injected clock, so expiry is exact to the leeway."""
    token = hs256(claims(exp=1_000_600, iat=1_000_000))
    assert make_policy(keys, clock=lambda: 1_000_609.0).verify(token)
    with pytest.raises(AuthError, match=r"^expired$"):
        make_policy(keys, clock=lambda: 1_000_610.0).verify(token)


@pytest.mark.parametrize("which", ["rsa1", "rsa2", "ed1", "ed2"])
def test_every_rotated_key_verifies_its_tokens(policy: TokenPolicy, keys: Keys, which: str) -> None:
    """RS256 and EdDSA tokens of each of the two keys per algorithm are accepted by kid."""
    assert policy.verify(signed(getattr(keys, which), claims())).id == "42"


def test_single_asymmetric_key_is_the_default(keys: Keys) -> None:
    """With one public key only, tokens without kid use it; with two they need a kid."""
    one = make_policy(
        keys, keys=KeyRing.build([public_key_from_pem("k", keys.ed1.public_pem)]), signing=None
    )
    assert one.verify(jwt.encode(claims(), keys.ed1.private, algorithm="EdDSA")).id == "42"
    two = make_policy(
        keys,
        keys=KeyRing.build(
            [public_key_from_pem(p.kid, p.public_pem) for p in (keys.rsa1, keys.rsa2)]
        ),
    )
    with pytest.raises(AuthError, match=r"^unknown_key$"):
        two.verify(jwt.encode(claims(), keys.rsa1.private, algorithm="RS256"))


def test_jwks_document_keys_verify(keys: Keys) -> None:
    """Keys from a JWKS document (RSA and OKP, with kids) verify their tokens."""
    document = {
        "keys": [
            {**RSAAlgorithm.to_jwk(keys.rsa2.private.public_key(), as_dict=True), "kid": "j-rsa", "use": "sig"},
            {**OKPAlgorithm.to_jwk(keys.ed2.private.public_key(), as_dict=True), "kid": "j-ed"},
        ]
    }  # fmt: skip
    ring = KeyRing.build(keys_from_jwks(json.dumps(document)))
    checker = make_policy(keys, keys=ring, signing=None)
    assert checker.verify(signed(keys.rsa2, claims(), kid="j-rsa")).id == "42"
    assert checker.verify(signed(keys.ed2, claims(), kid="j-ed")).id == "42"
    with pytest.raises(AuthError, match=r"^bad_signature$"):
        checker.verify(signed(keys.rsa1, claims(), kid="j-rsa"))


@pytest.mark.parametrize(
    "document",
    [
        "not json",
        json.dumps({"keys": []}),
        json.dumps({"keys": [{"kty": "oct", "k": b64(b"s" * 32), "kid": "x"}]}),
        json.dumps({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64(b"\x00" * 32)}]}),
    ],
    ids=["garbage", "empty", "symmetric", "no kid"],
)
def test_unusable_jwks_documents_are_refused(document: str) -> None:
    """A JWKS without usable public signature keys with kids is a configuration error."""
    with pytest.raises(ValueError, match="JWKS"):
        keys_from_jwks(document)


def test_short_hs256_secret_is_refused() -> None:
    """HS256 secrets shorter than 32 bytes are refused (RFC 7518 3.2)."""
    with pytest.raises(ValueError, match="32 bytes"):
        hs256_key("short")


def test_a_ring_needs_a_key() -> None:
    """A key ring without any key cannot be built."""
    with pytest.raises(ValueError, match="no verification key"):
        KeyRing.build([])


def test_minted_token_round_trips(policy: TokenPolicy) -> None:
    """mint() produces a token verify() accepts, with a fresh canonical session id."""
    token, issued = policy.mint(
        Principal(PrincipalKind.AGENT, "9", group_ids=("3", "4"), roles=("agent",)), ttl=120
    )
    assert policy.verify(token) == issued
    assert is_canonical_id(issued.session_id)
    assert int(issued.session_id) < SESSION_ID_BOUND
    assert issued.expires_at - int(issued.issued_at) in (119, 120)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_mint_keeps_a_given_session_and_caps_the_lifetime(policy: TokenPolicy) -> None:
    """A given session id is kept; ttl 0 means the default, above the maximum is capped."""
    _, default = policy.mint(Principal(PrincipalKind.USER, "1", session_id="5"))
    assert default.session_id == "5"
    assert abs(default.expires_at - time.time() - policy.default_ttl) < 2
    _, capped = policy.mint(Principal(PrincipalKind.USER, "1"), ttl=10**9)
    assert abs(capped.expires_at - time.time() - policy.max_ttl) < 2


@pytest.mark.parametrize(
    "principal",
    [
        Principal(PrincipalKind.USER, "01"),
        Principal(PrincipalKind.AGENT, "-1"),
        Principal(PrincipalKind.SERVICE, "Has Space"),
        Principal(PrincipalKind.USER, "1", session_id="0"),
        Principal(PrincipalKind.USER, "1", team_ids=("x",)),
    ],
)
def test_mint_refuses_invalid_principals(policy: TokenPolicy, principal: Principal) -> None:
    """Invalid identities are never signed."""
    with pytest.raises(InvalidRequest):
        policy.mint(principal)


def test_mint_refuses_negative_ttl(policy: TokenPolicy) -> None:
    """A negative lifetime is an invalid request."""
    with pytest.raises(InvalidRequest, match="ttl"):
        policy.mint(Principal(PrincipalKind.USER, "1"), ttl=-5)


def test_service_principal_needs_no_session(policy: TokenPolicy) -> None:
    """Service tokens carry a name as sub and may omit sid."""
    principal = policy.verify(hs256(claims(kind="service", sub="alert-manager", sid=None)))
    assert (principal.kind, principal.id, principal.session_id) == (
        PrincipalKind.SERVICE,
        "alert-manager",
        "",
    )


def test_verify_only_policy_cannot_mint(keys: Keys) -> None:
    """Without a signing key the policy refuses to issue."""
    with pytest.raises(CannotIssue):
        make_policy(keys, signing=None).mint(Principal(PrincipalKind.USER, "1"))


@pytest.mark.parametrize("which", ["rsa1", "ed2"])
def test_private_key_signing_uses_its_algorithm_and_kid(keys: Keys, which: str) -> None:
    """An RS256/EdDSA signing key mints tokens with its kid that its public key verifies."""
    pair = getattr(keys, which)
    signer = signing_key_from_pem(pair.kid, pair.private_pem)
    policy = make_policy(keys, signing=signer)
    token, issued = policy.mint(Principal(PrincipalKind.USER, "3"))
    assert jwt.get_unverified_header(token) == {"alg": pair.alg, "kid": pair.kid, "typ": "JWT"}
    assert policy.verify(token) == issued


def test_reasons_match_the_proto_comment() -> None:
    """The reason list in auth.proto's header comment is exactly Reason."""
    lines = (ROOT / "protos/roomgate/auth/v1/auth.proto").read_text().splitlines()
    header = " ".join(
        line.removeprefix("//").strip() for line in lines[:6] if line.startswith("//")
    )
    listed = re.search(r"docs/authorization\.md\):\s*(.*?)\.(\s|$)", header)
    assert listed is not None
    assert {w.strip() for w in listed.group(1).split(",")} == {r.value for r in Reason}


@given(st.text(max_size=24) | st.integers(min_value=-5, max_value=10**20).map(str))
def test_canonical_id_is_its_own_decimal_rendering(value: str) -> None:
    """A canonical id is exactly str(n) for some 1 <= n <= 2**63 - 1, for any text at all."""
    expected = value.isascii() and value.isdigit() and str(int(value)) == value
    expected = expected and 1 <= int(value) <= MAX_ID
    assert is_canonical_id(value) is expected
