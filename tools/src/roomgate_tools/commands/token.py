"""``roomgate token``: print a token the local dev auth service accepts, or decode one.

    roomgate token --kind user --id 42 --role operator --perm view_system --group 3 --team 7
    roomgate token --kind agent --id 1001 --ttl 600 --session 5
    roomgate token --kind user --id 42 --via-auth 127.0.0.1:50051   # IssueToken as admin
    roomgate token --decode eyJhbGciOi...

Tokens are signed with the HS256 secret of ``.dev/secrets.env`` (``roomgate_tools.devenv``)
by the auth service's own minting code (``roomgate_auth.tokens``); ``--via-auth`` asks a
running auth service instead, with the dev admin credential.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from roomgate_auth.errors import AuthError, InvalidRequest
from roomgate_auth.tokens import KeyRing, TokenPolicy, hs256_key, hs256_signing_key
from roomgate_common.identity import Principal, PrincipalKind

from roomgate_tools.devenv import dev_secrets

KINDS = [k.value for k in PrincipalKind]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "token",
        help="print a dev token (or decode one)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--kind", choices=KINDS, default="user", help="principal kind")
    parser.add_argument("--id", help="user/agent id (canonical integer) or service name")
    parser.add_argument("--role", action="append", default=[], help="repeatable")
    parser.add_argument("--perm", action="append", default=[], help="repeatable")
    parser.add_argument("--group", action="append", default=[], help="group id, repeatable")
    parser.add_argument("--team", action="append", default=[], help="team id, repeatable")
    parser.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    parser.add_argument("--session", default="", help="session id (random when omitted)")
    parser.add_argument(
        "--via-auth", metavar="HOST:PORT", help="ask a running auth service (IssueToken as admin)"
    )
    parser.add_argument("--decode", metavar="TOKEN", help="print a token's header and claims")
    parser.set_defaults(func=run)


def dev_policy(secrets: dict[str, str] | None = None) -> TokenPolicy:
    """The token policy of the local dev auth service (HS256 with the dev secret)."""
    values = secrets if secrets is not None else dev_secrets()
    secret = values["ROOMGATE_JWT_HS256_SECRET"]
    return TokenPolicy(
        issuer=values["ROOMGATE_JWT_ISSUER"],
        audience=values["ROOMGATE_JWT_AUDIENCE"],
        keys=KeyRing.build([], hs256_key(secret)),
        signing=hs256_signing_key(secret),
    )


def run(args: argparse.Namespace) -> int:
    if args.decode:
        return _decode(args.decode)
    if not args.id:
        print("roomgate token: --id is required", file=sys.stderr)
        return 2
    principal = Principal(
        kind=PrincipalKind(args.kind),
        id=args.id,
        session_id=args.session,
        roles=tuple(args.role),
        permissions=tuple(args.perm),
        group_ids=tuple(args.group),
        team_ids=tuple(args.team),
    )
    if args.via_auth:
        return _via_auth(args.via_auth, principal, args.ttl)
    policy = dev_policy()
    try:
        token, _issued = policy.mint(principal, args.ttl)
    except InvalidRequest as exc:
        print(f"roomgate token: {exc}", file=sys.stderr)
        return 2
    if args.ttl > policy.max_ttl:
        print(f"roomgate token: ttl capped at {policy.max_ttl} s", file=sys.stderr)
    print(token)
    return 0


def _via_auth(target: str, principal: Principal, ttl: int) -> int:
    import grpc
    from roomgate.auth.v1 import auth_pb2, auth_pb2_grpc
    from roomgate_auth.service import principal_to_proto

    admin = dev_secrets()["ROOMGATE_ADMIN_SECRET"]
    with grpc.insecure_channel(target) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        try:
            response = stub.IssueToken(
                auth_pb2.IssueTokenRequest(
                    principal=principal_to_proto(principal), ttl_seconds=ttl
                ),
                metadata=(("authorization", f"Bearer {admin}"),),
                timeout=10,
            )
        except grpc.RpcError as exc:
            print(f"roomgate token: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    print(response.token)
    return 0


def _decode(token: str) -> int:
    """Header and claims (unverified), then whether the dev auth service would accept it."""
    import jwt

    try:
        header = jwt.get_unverified_header(token)
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        print(f"roomgate token: not a JWT ({type(exc).__name__})", file=sys.stderr)
        return 1
    print(json.dumps({"header": header, "claims": claims}, indent=2, sort_keys=True))
    try:
        dev_policy().verify(token)
        print("dev auth service: accepted (revocation not checked)", file=sys.stderr)
    except AuthError as exc:
        print(f"dev auth service: rejected ({exc.reason.value})", file=sys.stderr)
    return 0
