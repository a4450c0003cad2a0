"""Moved: the ACL change event is ``roomgate_common.aclevents``. This alias stays only until
the gateway (aclchanges.py, gateway.py) imports it from there."""

from __future__ import annotations

from roomgate_common.aclevents import OPS as OPS
from roomgate_common.aclevents import AclChange as AclChange
from roomgate_common.aclevents import AclChangedEvent as AclChangedEvent
from roomgate_common.aclevents import may_affect as may_affect
from roomgate_common.aclevents import parse_acl_event as parse_acl_event
