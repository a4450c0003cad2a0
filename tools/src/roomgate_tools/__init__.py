"""Roomgate tools: CLI, dev runner, benchmarks."""

import os

# The tools fork children (redis-server, services, HAProxy) from processes that also call
# gRPC (health checks, benchmarks). With gRPC's fork support on, the child can abort before
# exec (its poller thread restarts on an epoll fd that subprocess.Popen already closed:
# grpc/grpc#43055). The children exec a fresh interpreter, so fork support is not needed.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
