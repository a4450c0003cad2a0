"""Exceptions shared by every Roomgate package.

    RoomgateError
    ├── ConfigurationError      settings missing or invalid (raised at start, never later)
    ├── BusUnavailable          Redis cannot be reached or answered with a connection error
    └── BusBusy                 this process's Redis pool had no free connection in time:
                                local overload, not Redis down (never read as BusUnavailable)

Services define their own hierarchy below ``RoomgateError``.
"""


class RoomgateError(Exception):
    """Base of every Roomgate exception."""


class ConfigurationError(RoomgateError):
    """A setting is missing or invalid."""


class BusUnavailable(RoomgateError):
    """Redis (the bus and the shared state) is not reachable right now."""


class BusBusy(RoomgateError):
    """Every pooled Redis connection of this process stayed busy for the pool's timeout."""
