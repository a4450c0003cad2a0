"""Roomgate gateway: WebSocket protocol, fan-out over Redis, limits (see docs/protocol.md)."""
