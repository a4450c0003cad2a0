"""Lua scripts are package resources: every .lua file is loaded, placeholders filled."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from roomgate_common import mailbox, publisher
from roomgate_common.lua import load_lua

ROOT = Path(__file__).resolve().parents[2]


def test_placeholders_are_filled_from_the_python_constants() -> None:
    """The mailbox function names the fields the Python side reads, and no `$` is left."""
    assert f"local EVICTED_FIELD = '{mailbox.EVICTED_FIELD}'" in mailbox.FILE_FUNCTION
    assert f"local SEQUENCE_FIELD = '{mailbox.SEQUENCE_FIELD}'" in mailbox.FILE_FUNCTION
    for script in (mailbox.FILE_SCRIPT, mailbox.REMOVE_SCRIPT, publisher.PUBLISH_SCRIPT):
        assert "$" not in script


def test_a_placeholder_without_a_value_fails_at_load() -> None:
    """A script needing a value it is not given is an error, never a literal `$NAME`."""
    with pytest.raises(KeyError):
        load_lua("roomgate_common", "mailbox_function.lua", EVICTED_FIELD="_evicted")


def test_every_lua_file_is_loaded_by_its_module() -> None:
    """Each services/*/src/<pkg>/<module>_<script>.lua is named in <module>.py."""
    files = sorted(ROOT.glob("services/*/src/*/*.lua"))
    assert files
    for lua in files:
        module = lua.parent / (lua.name.split("_", 1)[0] + ".py")
        assert module.is_file(), lua
        assert re.search(rf'"{re.escape(lua.name)}"', module.read_text()), lua
