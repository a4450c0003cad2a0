"""``roomgate bench <name>``: benchmark programs that print figures.

Each benchmark is a module in ``roomgate_tools.bench`` with a docstring (its help text),
``add_arguments(parser)`` and ``run(args) -> int``. ``roomgate bench all`` runs them in turn.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from types import ModuleType

from roomgate_tools import bench


def _benchmarks() -> dict[str, ModuleType]:
    return {
        info.name: importlib.import_module(f"{bench.__name__}.{info.name}")
        for info in pkgutil.iter_modules(bench.__path__)
        if not info.name.startswith("_")
    }


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("bench", help="run a benchmark and print its figures")
    sub_benchmarks = parser.add_subparsers(dest="bench", required=True)
    for name, module in sorted(_benchmarks().items()):
        doc = (module.__doc__ or name).strip().splitlines()[0]
        p = sub_benchmarks.add_parser(name, help=doc, description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    everything = sub_benchmarks.add_parser("all", help="run every benchmark with its defaults")
    everything.set_defaults(func=_run_all)


def _run_all(_args: argparse.Namespace) -> int:
    status = 0
    for name, module in sorted(_benchmarks().items()):
        print(f"\n=== {name}", flush=True)
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        status |= int(module.run(parser.parse_args([])))
    return status
