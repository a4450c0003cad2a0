"""Pieces of ``roomgate bench fanout`` (see roomgate_tools.bench.fanout).

The package name starts with ``_`` so that the ``roomgate bench`` dispatcher, which turns
every public module of ``roomgate_tools.bench`` into a benchmark, does not list it.

- ``ledger``: the pure delivery bookkeeping (what each client received, latencies).
- ``wire``: the pure decoders of the three wire protocols (Roomgate, plain, Socket.IO).
- ``loadgen``: picows clients that speak those protocols, feeding the ledger.
- ``procstat``: CPU time and RSS of a process tree, read from ``/proc``.
- ``targets``: how each server under test is started, fed and stopped.
- ``starlette_server``, ``socketio_server``: the two baselines, run as subprocesses.
"""
