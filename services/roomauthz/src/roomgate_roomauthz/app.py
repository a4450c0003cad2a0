"""Moved: the roomauthz process is ``roomgate_roomauthz.server`` (services/README.md, module
names). This alias stays only until tests/gateway/conftest.py imports it from there."""

from __future__ import annotations

from roomgate_roomauthz.server import RoomAuthzServer as RoomAuthzServer
