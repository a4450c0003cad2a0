"""``roomgate demo``: feed synthetic agents, tasks, alerts and system metrics into a running
stack (``make dev`` starts it by itself), so the console at ``/console`` is alive.

    roomgate demo                              # into http://127.0.0.1:8000 until Ctrl-C
    roomgate demo --url http://127.0.0.1:9000 --duration 60

Publishes through the HTTP publish API with a service token signed with the dev secret
(``.dev/secrets.env``); alerts go into ``alerts``, where the escalation service picks them up.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from roomgate_tools.demo import run_feed
from roomgate_tools.devenv import dev_secrets
from roomgate_tools.stack import mint_token

# A dev console user: sees and acts on everything the demo feeds.
CONSOLE_PERMS = ("view_system", "view_agents", "view_tasks", "ack_alerts", "resolve_alerts")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "demo",
        help="feed synthetic agents, tasks and alerts into a running stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the load balancer")
    parser.add_argument("--duration", type=float, default=0, help="seconds (0: until Ctrl-C)")
    parser.set_defaults(func=run)


def service_token(secrets: dict[str, str]) -> str:
    return mint_token(secrets, "demo-feed", kind="service", perms=("publish",), ttl=7 * 86400)


def console_token(secrets: dict[str, str], ttl: int = 12 * 3600) -> str:
    return mint_token(secrets, "42", kind="user", perms=CONSOLE_PERMS, ttl=ttl)


def run(args: argparse.Namespace) -> int:
    secrets = dev_secrets()
    until = time.monotonic() + args.duration if args.duration else float("inf")
    print(f"roomgate demo: publishing into {args.url} (Ctrl-C stops)", flush=True)
    try:
        accepted = asyncio.run(
            run_feed(
                args.url,
                service_token(secrets),
                stop=lambda: time.monotonic() >= until,
                say=lambda m: print(m, file=sys.stderr, flush=True),
            )
        )
    except KeyboardInterrupt:
        return 0
    print(f"roomgate demo: {accepted} events accepted")
    return 0
