"""Benchmark programs (see roomgate_tools.commands.bench)."""
