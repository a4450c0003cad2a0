"""Subcommands of ``roomgate`` (one module each, see roomgate_tools.cli)."""
