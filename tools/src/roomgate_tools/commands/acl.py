"""``roomgate acl``: list and change the room ACL data (agent <-> group, user <-> group/team)
through roomauthz's AclAdminService, and ask Authorize a question like a gateway would.

    roomgate acl list [--relation agent_group] [--subject 7]
    roomgate acl add agent_group 7 3 [4 ...]
    roomgate acl remove user_team 42 5
    roomgate acl check --kind user --id 42 --perm view_system --room agent-7

The admin credential comes from ROOMGATE_ADMIN_SECRET, else from the dev secrets
(``.dev/secrets.env``). Exit codes: 0 success (``check``: allowed), 1 denied (``check``),
2 bad arguments, 3 the server refused or could not be reached.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from roomgate.auth.v1 import auth_pb2
from roomgate.roomauthz.v1 import roomauthz_pb2 as pb
from roomgate.roomauthz.v1 import roomauthz_pb2_grpc as pb_grpc
from roomgate_common.identity import is_canonical_id

from roomgate_tools.devenv import dev_secrets

DEFAULT_SERVER = "127.0.0.1:50052"
TIMEOUT = 10.0
RELATIONS = {
    "agent_group": pb.RELATION_AGENT_GROUP,
    "user_group": pb.RELATION_USER_GROUP,
    "user_team": pb.RELATION_USER_TEAM,
}
RELATION_NAMES = {v: k for k, v in RELATIONS.items()}
KINDS = {
    "user": auth_pb2.PRINCIPAL_KIND_USER,
    "agent": auth_pb2.PRINCIPAL_KIND_AGENT,
    "service": auth_pb2.PRINCIPAL_KIND_SERVICE,
}
ACTIONS = {"subscribe": pb.ACTION_SUBSCRIBE, "publish": pb.ACTION_PUBLISH}

EXIT_DENIED, EXIT_USAGE, EXIT_RPC = 1, 2, 3


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "acl",
        help="list/change room ACL data, check a decision (roomauthz)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--server", default=DEFAULT_SERVER, help="roomauthz host:port")
    # --server is also accepted after the subcommand (`roomgate acl list --server ...`).
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--server", default=argparse.SUPPRESS, help="roomauthz host:port")
    commands = parser.add_subparsers(dest="acl_command", required=True)

    ls = commands.add_parser("list", help="list ACL entries", parents=[server])
    ls.add_argument("--relation", choices=sorted(RELATIONS))
    ls.add_argument("--subject", default="", help="only this subject id")
    ls.set_defaults(func=_list)

    for name, verb in (("add", "add"), ("remove", "remove")):
        p = commands.add_parser(
            name, help=f"{verb} entries: RELATION SUBJECT OBJECT [OBJECT ...]", parents=[server]
        )
        p.add_argument("relation", choices=sorted(RELATIONS))
        p.add_argument("subject", help="agent id (agent_group) or user id")
        p.add_argument("objects", nargs="+", metavar="object", help="group or team id")
        p.set_defaults(func=_change, op=name)

    check = commands.add_parser(
        "check", help="ask Authorize for one principal and room", parents=[server]
    )
    check.add_argument("--kind", choices=sorted(KINDS), default="user")
    check.add_argument("--id", required=True, help="user/agent id or service name")
    check.add_argument("--session", default="", help="session id")
    check.add_argument("--perm", action="append", default=[], help="a permission (repeat)")
    check.add_argument("--role", action="append", default=[], help="a role (repeat)")
    check.add_argument("--group", action="append", default=[], help="a token group id (repeat)")
    check.add_argument("--team", action="append", default=[], help="a token team id (repeat)")
    check.add_argument("--room", required=True)
    check.add_argument("--action", choices=sorted(ACTIONS), default="subscribe")
    check.add_argument("--type", default="", help="message type (publish)")
    check.set_defaults(func=_check)


def _admin_metadata() -> tuple[tuple[str, str], ...]:
    secret = os.environ.get("ROOMGATE_ADMIN_SECRET") or dev_secrets().get(
        "ROOMGATE_ADMIN_SECRET", ""
    )
    return (("authorization", f"Bearer {secret}"),)


def _fail(message: str, code: int) -> int:
    print(f"roomgate acl: {message}", file=sys.stderr)
    return code


def _rpc_error(args: argparse.Namespace, exc: grpc.RpcError) -> int:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    name = code.name if code is not None else "ERROR"
    return _fail(f"{name} from {args.server}: {details}", EXIT_RPC)


def _list(args: argparse.Namespace) -> int:
    if args.subject and not is_canonical_id(args.subject):
        return _fail(f"subject must be a positive integer, got {args.subject!r}", EXIT_USAGE)
    request = pb.ListAclRequest(
        relation=RELATIONS[args.relation] if args.relation else pb.RELATION_UNSPECIFIED,
        subject_id=args.subject,
    )
    with grpc.insecure_channel(args.server) as channel:
        try:
            reply = pb_grpc.AclAdminServiceStub(channel).ListAcl(
                request, metadata=_admin_metadata(), timeout=TIMEOUT
            )
        except grpc.RpcError as exc:
            return _rpc_error(args, exc)
    rows = [(RELATION_NAMES[e.relation], e.subject_id, e.object_id) for e in reply.entries]
    width = max([len("relation"), *(len(r[0]) for r in rows)])
    sub_width = max([len("subject"), *(len(r[1]) for r in rows)])
    print(f"{'relation':<{width}}  {'subject':>{sub_width}}  object")
    for relation, subject, obj in rows:
        print(f"{relation:<{width}}  {subject:>{sub_width}}  {obj}")
    print(f"{len(rows)} entries, acl version {reply.version}")
    return 0


def _change(args: argparse.Namespace) -> int:
    bad = [v for v in [args.subject, *args.objects] if not is_canonical_id(v)]
    if bad:
        return _fail(f"ids must be positive integers without leading zeros: {bad}", EXIT_USAGE)
    entries = [
        pb.AclEntry(relation=RELATIONS[args.relation], subject_id=args.subject, object_id=obj)
        for obj in args.objects
    ]
    request = (
        pb.ChangeAclRequest(add=entries)
        if args.op == "add"
        else pb.ChangeAclRequest(remove=entries)
    )
    with grpc.insecure_channel(args.server) as channel:
        try:
            reply = pb_grpc.AclAdminServiceStub(channel).ChangeAcl(
                request, metadata=_admin_metadata(), timeout=TIMEOUT
            )
        except grpc.RpcError as exc:
            return _rpc_error(args, exc)
    verb = "added" if args.op == "add" else "removed"
    for obj in args.objects:
        print(f"{verb} {args.relation} {args.subject} -> {obj}")
    print(f"acl version {reply.version}")
    return 0


def _check(args: argparse.Namespace) -> int:
    principal = auth_pb2.Principal(
        kind=KINDS[args.kind],
        id=args.id,
        session_id=args.session,
        permissions=args.perm,
        roles=args.role,
        group_ids=args.group,
        team_ids=args.team,
    )
    request = pb.AuthorizeRequest(
        principal=principal, room=args.room, action=ACTIONS[args.action], message_type=args.type
    )
    with grpc.insecure_channel(args.server) as channel:
        try:
            reply = pb_grpc.RoomAuthzServiceStub(channel).Authorize(request, timeout=TIMEOUT)
        except grpc.RpcError as exc:
            return _rpc_error(args, exc)
    decision = reply.decision
    verdict = "allowed" if decision.allowed else f"denied ({decision.reason})"
    what = f"{args.action} {args.room}" + (f" [{args.type}]" if args.type else "")
    print(f"{args.kind} {args.id}: {what}: {verdict}")
    return 0 if decision.allowed else EXIT_DENIED
