"""Roomgate tools: CLI, dev runner, benchmarks."""
