"""Lua scripts as package resources: every script Roomgate runs in Redis is a ``.lua`` file
next to the module that registers it (``<module>_<script>.lua``), read once at import and
shipped in the wheel with the package.

    TRIGGER = load_lua(__package__, "store_now.lua", "store_trigger.lua")

The files are concatenated in order (a shared Lua prelude first). ``$NAME`` placeholders
are replaced by the keyword arguments, so a constant the Python side also uses (a hash
field's name) is written once; a placeholder without a value is a ``KeyError`` at import.
Standard library only.
"""

from __future__ import annotations

from importlib.resources import files
from string import Template


def load_lua(package: str | None, *names: str, **values: str) -> str:
    """The text of the ``.lua`` resources ``names`` of ``package``, concatenated in order,
    with ``$NAME`` placeholders replaced by ``values`` (only when values are given)."""
    if not package:
        raise ValueError("load_lua needs the package that holds the scripts")
    root = files(package)
    text = "".join(root.joinpath(name).read_text(encoding="utf-8") for name in names)
    return Template(text).substitute(values) if values else text
