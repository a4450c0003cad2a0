"""The pure core of the auth service: verify and mint JWTs, principals as values.

No gRPC, no Redis: ``TokenPolicy.verify`` takes a token string and returns a ``Principal`` or
raises ``AuthError(reason)``; ``TokenPolicy.mint`` does the reverse. Revocation lives in
Redis and is checked by the I/O shell (``roomgate_auth.store``) on the principal returned.

Keys. Every verification key is a ``jwt.PyJWK`` whose algorithm is fixed when the key is
loaded (HS256 for a shared secret, RS256 for RSA, EdDSA for Ed25519, ES256 for P-256);
the token header only chooses *which* key (``kid``) and must then name exactly that key's
algorithm. So ``alg: none`` and algorithm confusion (an HS256 token "signed" with an RSA
public key's PEM) are rejected before any signature check. A token without ``kid`` uses
the ring's default key (the HS256 secret, or the only key there is).

Claims (all checked, see ``Principal``): ``iss``, ``aud``, ``sub``, ``kind``
(user|agent|service), ``sid``, ``iat``, ``exp`` (required), ``nbf`` (optional), ``jti``,
``roles``, ``perms``, ``groups``, ``teams``. Users, agents, sessions, groups and teams are
named by canonical ids, services by a lowercase name (the rules, and ``Principal`` itself,
are in ``roomgate_common.identity``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidJTIError, InvalidSubjectError
from roomgate_common.identity import (
    MAX_LIST_ENTRIES,
    Principal,
    PrincipalKind,
    is_canonical_id,
    is_name,
)
from roomgate_common.jsondepth import too_deep

from roomgate_auth.errors import AuthError, CannotIssue, InvalidRequest, Reason

# --- limits ------------------------------------------------------------------------------

SESSION_ID_BOUND = 2**53
"""Generated session ids are below this (exact in JavaScript numbers)."""
MIN_HS256_SECRET_BYTES = 32
"""RFC 7518 3.2: an HS256 key is at least as long as the hash output."""
MIN_RSA_BITS = 2048

_JTI = re.compile(r"[A-Za-z0-9_-]{1,64}")
# header.payload.signature, base64url without padding (an empty signature is left for the
# algorithm check to refuse: that is how "alg: none" tokens look).
_COMPACT_JWS = re.compile(r"([A-Za-z0-9_-]{2,})\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*")
_KID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def is_valid_kid(value: object) -> bool:
    return isinstance(value, str) and _KID.fullmatch(value) is not None


# --- keys ----------------------------------------------------------------------------------


def hs256_key(secret: str | bytes) -> jwt.PyJWK:
    """A verification (and signing) key for HS256 from a shared secret."""
    raw = secret.encode() if isinstance(secret, str) else secret
    if len(raw) < MIN_HS256_SECRET_BYTES:
        raise ValueError(f"an HS256 secret needs at least {MIN_HS256_SECRET_BYTES} bytes")
    jwk = HMACAlgorithm.to_jwk(raw, as_dict=True)
    return jwt.PyJWK({**jwk, "alg": "HS256"})


def _public_jwk(public_key: Any, kid: str) -> jwt.PyJWK:
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key {kid!r} has fewer than {MIN_RSA_BITS} bits")
        jwk, alg = RSAAlgorithm.to_jwk(public_key, as_dict=True), "RS256"
    elif isinstance(public_key, ed25519.Ed25519PublicKey):
        jwk, alg = OKPAlgorithm.to_jwk(public_key, as_dict=True), "EdDSA"
    elif isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(
        public_key.curve, ec.SECP256R1
    ):
        jwk, alg = ECAlgorithm.to_jwk(public_key, as_dict=True), "ES256"
    else:
        raise ValueError(f"key {kid!r}: only RSA, Ed25519 and P-256 public keys are supported")
    return jwt.PyJWK({**jwk, "kid": kid, "alg": alg})


def public_key_from_pem(kid: str, pem: bytes) -> jwt.PyJWK:
    """A verification key from a PEM public key (or certificate-less private key: its public
    half); its algorithm follows from its type."""
    if not is_valid_kid(kid):
        raise ValueError(f"invalid key id {kid!r}")
    try:
        public: Any = serialization.load_pem_public_key(pem)
    except ValueError:
        public = signing_key_from_pem(kid, pem).private_key.public_key()
    return _public_jwk(public, kid)


def keys_from_jwks(document: str | bytes) -> list[jwt.PyJWK]:
    """The verification keys of a JWKS document. Every key needs a ``kid``; symmetric keys and
    keys meant for encryption (``use: enc``) are refused, not skipped."""
    try:
        keyset = jwt.PyJWKSet.from_json(
            document.decode() if isinstance(document, bytes) else document
        )
    except (ValueError, jwt.PyJWTError) as exc:
        raise ValueError(f"unusable JWKS document: {exc}") from None
    keys: list[jwt.PyJWK] = []
    for key in keyset:
        if not is_valid_kid(key.key_id):
            raise ValueError("every JWKS key needs a valid kid")
        if key.public_key_use not in (None, "sig"):
            raise ValueError(f"JWKS key {key.key_id!r} is not a signature key")
        if key.algorithm_name.startswith("HS") or key.algorithm_name == "none":
            raise ValueError(f"JWKS key {key.key_id!r}: only public keys are accepted")
        keys.append(_public_jwk(key.key, key.key_id or ""))  # normalise the algorithm
    return keys


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The key tokens are minted with: an HS256 secret or a private key with its kid."""

    algorithm: str
    private_key: Any
    kid: str = ""

    def public(self) -> jwt.PyJWK | None:
        """The matching verification key (None for HS256, whose key is the secret itself)."""
        if self.algorithm == "HS256":
            return None
        return _public_jwk(self.private_key.public_key(), self.kid)


def hs256_signing_key(secret: str | bytes) -> SigningKey:
    hs256_key(secret)  # length check
    return SigningKey("HS256", secret.encode() if isinstance(secret, str) else secret)


def signing_key_from_pem(kid: str, pem: bytes) -> SigningKey:
    """A private key (RSA, Ed25519 or P-256, PEM, unencrypted) for minting tokens."""
    if not is_valid_kid(kid):
        raise ValueError(f"invalid key id {kid!r}")
    try:
        private: Any = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"key {kid!r} is not an unencrypted PEM private key") from exc
    algorithm = _public_jwk(private.public_key(), kid).algorithm_name
    return SigningKey(algorithm, private, kid)


@dataclass(frozen=True)
class KeyRing:
    """Verification keys by kid, plus the key for tokens without a kid."""

    by_kid: Mapping[str, jwt.PyJWK]
    default: jwt.PyJWK | None = None

    @classmethod
    def build(cls, keys: Iterable[jwt.PyJWK], hs256: jwt.PyJWK | None = None) -> KeyRing:
        """Ring of ``keys`` (unique kids). The default key is the HS256 secret when there is
        one, else the only key; with several asymmetric keys every token needs its kid."""
        by_kid: dict[str, jwt.PyJWK] = {}
        for key in keys:
            kid = key.key_id or ""
            if kid in by_kid:
                if by_kid[kid]._jwk_data != key._jwk_data:
                    raise ValueError(f"two different keys share the kid {kid!r}")
                continue
            by_kid[kid] = key
        default = hs256
        if default is None and len(by_kid) == 1:
            default = next(iter(by_kid.values()))
        if default is None and not by_kid:
            raise ValueError("no verification key configured")
        return cls(by_kid, default)

    def select(self, kid: object) -> jwt.PyJWK:
        if kid is None:
            key = self.default
        elif isinstance(kid, str):
            key = self.by_kid.get(kid)
        else:
            raise AuthError(Reason.MALFORMED)
        if key is None:
            raise AuthError(Reason.UNKNOWN_KEY)
        return key


# --- the policy ----------------------------------------------------------------------------

_SIGNATURE_ERRORS: Sequence[tuple[type[Exception], Reason]] = (
    # Most specific first: InvalidSignatureError is a DecodeError.
    (jwt.InvalidSignatureError, Reason.BAD_SIGNATURE),
    (jwt.InvalidAlgorithmError, Reason.ALGORITHM_NOT_ALLOWED),
    (jwt.MissingRequiredClaimError, Reason.MISSING_CLAIM),
    (jwt.InvalidAudienceError, Reason.WRONG_AUDIENCE),
    (jwt.InvalidIssuerError, Reason.WRONG_ISSUER),
    (InvalidSubjectError, Reason.INVALID_CLAIM),
    (InvalidJTIError, Reason.INVALID_CLAIM),
    (jwt.InvalidKeyError, Reason.UNKNOWN_KEY),
    (jwt.PyJWTError, Reason.MALFORMED),
)

_LIST_CLAIMS = (
    ("roles", "roles", is_name),
    ("perms", "permissions", is_name),
    ("groups", "group_ids", is_canonical_id),
    ("teams", "team_ids", is_canonical_id),
)


@dataclass
class TokenPolicy:
    """Verifies and mints tokens for one issuer/audience with one key ring.

    ``leeway`` (seconds) forgives clock skew on ``exp``, ``nbf`` and ``iat``. A token whose
    lifetime (``exp - iat``) exceeds ``max_ttl`` is refused, so revocation entries that live
    ``max_ttl`` seconds outlive every token they revoke.
    """

    issuer: str
    audience: str
    keys: KeyRing
    signing: SigningKey | None = None
    leeway: float = 10.0
    default_ttl: int = 3600
    max_ttl: int = 86400
    max_token_bytes: int = 8192
    clock: Callable[[], float] = time.time
    _jwt: jwt.PyJWT = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.default_ttl <= self.max_ttl:
            raise ValueError("need 0 < default_ttl <= max_ttl")
        self._jwt = jwt.PyJWT(
            {
                "verify_exp": False,  # times are checked below with self.clock
                "verify_nbf": False,
                "verify_iat": False,
                "require": ["exp", "iat", "sub", "jti"],
                "enforce_minimum_key_length": True,
            }
        )

    # -- verification ---------------------------------------------------------------------

    def verify(self, token: str) -> Principal:
        """The principal ``token`` stands for, or ``AuthError`` (revocation not checked)."""
        if len(token) > self.max_token_bytes:
            raise AuthError(Reason.MALFORMED)
        shape = _COMPACT_JWS.fullmatch(token)
        if shape is None:
            raise AuthError(Reason.MALFORMED)
        header = _json_segment(shape.group(1))
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise AuthError(Reason.MALFORMED)
        key = self.keys.select(header.get("kid"))
        if alg != key.algorithm_name:  # covers "none" and every confusion
            raise AuthError(Reason.ALGORITHM_NOT_ALLOWED)
        try:
            claims = self._jwt.decode(
                token,
                key=key,
                algorithms=[key.algorithm_name],
                audience=self.audience,
                issuer=self.issuer,
            )
        except jwt.PyJWTError as exc:
            raise AuthError(_reason_of(exc)) from None
        return self._principal(claims)

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        now = self.clock()
        exp, iat, nbf = (_number(claims, name) for name in ("exp", "iat", "nbf"))
        assert exp is not None  # required by the decoder
        assert iat is not None
        if exp <= now - self.leeway:
            raise AuthError(Reason.EXPIRED)
        if iat > now + self.leeway or (nbf is not None and nbf > now + self.leeway):
            raise AuthError(Reason.NOT_YET_VALID)
        if exp - iat > self.max_ttl + self.leeway:
            raise AuthError(Reason.INVALID_CLAIM)

        raw_kind = claims.get("kind")
        if raw_kind is None:
            raise AuthError(Reason.MISSING_CLAIM)
        try:
            kind = PrincipalKind(raw_kind)
        except ValueError:
            raise AuthError(Reason.INVALID_CLAIM) from None
        sid = claims.get("sid")
        if sid is None:
            if kind is not PrincipalKind.SERVICE:
                raise AuthError(Reason.MISSING_CLAIM)
            sid = ""
        elif not is_canonical_id(sid):
            raise AuthError(Reason.INVALID_CLAIM)
        jti = claims["jti"]
        if not _JTI.fullmatch(jti):
            raise AuthError(Reason.INVALID_CLAIM)
        lists: dict[str, tuple[str, ...]] = {}
        for claim, attribute, ok in _LIST_CLAIMS:
            values = claims.get(claim, [])
            if (
                not isinstance(values, list)
                or len(values) > MAX_LIST_ENTRIES
                or not all(ok(v) for v in values)
            ):
                raise AuthError(Reason.INVALID_CLAIM)
            lists[attribute] = tuple(values)
        principal = Principal(
            kind=kind,
            id=claims["sub"],
            session_id=sid,
            token_id=jti,
            issued_at=float(iat),
            expires_at=int(exp),
            **lists,
        )
        if principal.problems():
            raise AuthError(Reason.INVALID_CLAIM)
        return principal

    # -- issuing ----------------------------------------------------------------------------

    def lifetime(self, ttl: int | None) -> int:
        """The lifetime a request for ``ttl`` seconds gets: default for 0/None, capped."""
        if ttl is None or ttl == 0:
            return self.default_ttl
        if ttl < 0:
            raise InvalidRequest("ttl must not be negative")
        return min(ttl, self.max_ttl)

    def mint(self, principal: Principal, ttl: int | None = None) -> tuple[str, Principal]:
        """A signed token for ``principal`` (its token facts are replaced) and the principal it
        stands for. A missing session id is drawn at random."""
        if self.signing is None:
            raise CannotIssue("no signing key configured")
        problems = principal.problems()
        if problems:
            raise InvalidRequest("; ".join(problems))
        lifetime = self.lifetime(ttl)
        now = self.clock()
        issued = replace(
            principal,
            session_id=principal.session_id or new_session_id(),
            token_id=secrets.token_urlsafe(16),
            issued_at=round(now, 6),
            expires_at=math.floor(now) + lifetime,
        )
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": issued.id,
            "kind": issued.kind.value,
            "sid": issued.session_id,
            "iat": issued.issued_at,
            "exp": issued.expires_at,
            "jti": issued.token_id,
        }
        for claim, attribute, _ok in _LIST_CLAIMS:
            values = getattr(issued, attribute)
            if values:
                claims[claim] = list(values)
        headers = {"kid": self.signing.kid} if self.signing.kid else None
        token = jwt.encode(
            claims, self.signing.private_key, algorithm=self.signing.algorithm, headers=headers
        )
        return token, issued

    def remaining(self, principal: Principal) -> int:
        """Seconds a revocation of ``principal``'s token must be remembered (at least 1)."""
        left = principal.expires_at + self.leeway - self.clock()
        return max(1, min(math.ceil(left), self.max_ttl + math.ceil(self.leeway)))


def _json_segment(segment: str) -> dict[str, Any]:
    """The JSON object in one base64url segment of a compact JWS, or AuthError(malformed)."""
    try:
        document = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        if too_deep(document):
            raise AuthError(Reason.MALFORMED)
        value = json.loads(document)
    except (ValueError, RecursionError):
        raise AuthError(Reason.MALFORMED) from None
    if not isinstance(value, dict):
        raise AuthError(Reason.MALFORMED)
    return value


def _reason_of(exc: Exception) -> Reason:
    for kind, reason in _SIGNATURE_ERRORS:
        if isinstance(exc, kind):
            return reason
    return Reason.MALFORMED


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthError(Reason.INVALID_CLAIM)
    try:
        number = float(value)
    except OverflowError:
        raise AuthError(Reason.INVALID_CLAIM) from None
    if not math.isfinite(number):
        raise AuthError(Reason.INVALID_CLAIM)
    return number


def new_session_id() -> str:
    """A random canonical session id in [1, 2**53)."""
    return str(secrets.randbelow(SESSION_ID_BOUND - 1) + 1)


# --- API keys --------------------------------------------------------------------------------

API_KEY_PREFIX = "rgk_"


def new_api_key() -> str:
    """A fresh API key (shown once; only its digest is stored)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def api_key_digest(api_key: str) -> str:
    """Lowercase hex SHA-256 of an API key: its key_id and the Redis key's name."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def is_api_key_digest(value: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{64}", value) is not None
