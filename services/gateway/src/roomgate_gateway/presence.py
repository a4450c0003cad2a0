"""Agent presence, coalesced per agent (pure; the clock is passed in).

An agent is *connected* on a gateway while it holds at least one connection there. A
change of that state is announced (``agent_connected``/``agent_disconnected`` into
``agents`` and ``agent-{id}``) at once when the agent's window is closed, and opens a
window of ``window`` seconds; changes inside the window are only remembered, and at its
end the agent's state is announced if it differs from the last announcement (which opens
the next window). However fast an agent flaps, each window carries at most one
announcement: the rooms' history keeps state changes, not the churn.
"""

from __future__ import annotations


class _Agent:
    __slots__ = ("announced", "current", "until")

    def __init__(self, announced: bool, current: bool, until: float) -> None:
        self.announced = announced  # the state last announced
        self.current = current  # the state now
        self.until = until  # end of the open window (0: none)


class PresencePolicy:
    """Which presence changes to announce now; the caller calls ``due`` at ``until``."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._agents: dict[str, _Agent] = {}

    def changed(self, agent_id: str, connected: bool, now: float) -> bool | None:
        """The agent is now ``connected`` (or not): the state to announce now, or None.
        After an announcement the caller schedules ``due(agent_id, ...)`` in ``window``."""
        agent = self._agents.get(agent_id)
        if agent is None:
            if not connected:
                return None  # never announced connected here: nothing to take back
            self._agents[agent_id] = _Agent(connected, connected, now + self.window)
            return connected
        agent.current = connected
        if agent.until:
            return None  # inside the window: decided at its end
        if connected == agent.announced:
            return None
        agent.announced = connected
        agent.until = now + self.window
        return connected

    def due(self, agent_id: str, now: float) -> bool | None:
        """The agent's window ended: the state to announce now (a new window opens, the
        caller schedules ``due`` again), or None (the window closes)."""
        agent = self._agents.get(agent_id)
        if agent is None or not agent.until:
            return None
        if agent.current != agent.announced:
            agent.announced = agent.current
            agent.until = now + self.window
            return agent.current
        agent.until = 0.0
        if not agent.current:  # announced gone and quiet: nothing to remember
            del self._agents[agent_id]
        return None

    def tracked(self) -> int:
        return len(self._agents)
