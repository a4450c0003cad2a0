"""The hostile suite runs on the gateway's test stack (tests/gateway/conftest.py)."""

from tests.gateway.conftest import stack

__all__ = ["stack"]
