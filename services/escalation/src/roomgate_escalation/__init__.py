"""Roomgate alert escalation service.

Modules: ``policy`` (pure: alert validation, targets, escalation plans, state machine),
``errors`` (exception hierarchy), ``settings`` (typed settings), ``store`` (Redis + Lua),
``events`` (publishing alert events into rooms), ``timers`` (the durable timer loop),
``consumer`` (the bus consumer group), ``server`` (the gRPC servicer), ``service``
(wiring of one replica), ``main`` (the console script).
"""
