"""Room history bounds by room pattern (pure): how many messages and how old a room's
history may be. One setting, ``ROOMGATE_HISTORY``, read by every publisher and gateway:

    "task-*=5000:604800,agents=500:3600,*=1000:86400"

Each rule is ``<pattern>=<max messages>:<max age seconds>``; patterns are shell-style
(``fnmatch``), the first matching rule wins, and ``*`` should come last. ``0`` messages
keeps no history for those rooms (no recovery there).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

DEFAULT_HISTORY = "*=1000:86400"


@dataclass(frozen=True, slots=True)
class HistoryBound:
    max_messages: int
    max_age: int  # seconds; 0 = no age bound


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    rules: tuple[tuple[str, HistoryBound], ...]

    @classmethod
    def parse(cls, spec: str) -> HistoryPolicy:
        """Parse the setting; raises ValueError naming the bad rule."""
        rules: list[tuple[str, HistoryBound]] = []
        for raw in (part.strip() for part in spec.split(",")):
            if not raw:
                continue
            pattern, sep, bounds = raw.partition("=")
            count, sep2, age = bounds.partition(":")
            if not (sep and sep2 and pattern and count.isdigit() and age.isdigit()):
                raise ValueError(f"history rule {raw!r}: expected <pattern>=<messages>:<seconds>")
            rules.append((pattern, HistoryBound(int(count), int(age))))
        if not rules:
            raise ValueError("history: no rule")
        return cls(tuple(rules))

    def bound(self, room: str) -> HistoryBound:
        for pattern, bound in self.rules:
            if fnmatchcase(room, pattern):
                return bound
        return HistoryBound(0, 0)
