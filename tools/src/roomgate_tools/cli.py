"""The ``roomgate`` command. Each subcommand lives in ``roomgate_tools.commands.<name>`` and
exposes ``register(subparsers)``, which adds its parser and sets ``func(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from roomgate_tools import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roomgate", description="Roomgate command line")
    sub = parser.add_subparsers(dest="command", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))
