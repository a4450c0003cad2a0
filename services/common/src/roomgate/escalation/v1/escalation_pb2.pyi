import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AlertState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_STATE_UNSPECIFIED: _ClassVar[AlertState]
    ALERT_STATE_TRIGGERED: _ClassVar[AlertState]
    ALERT_STATE_ESCALATED: _ClassVar[AlertState]
    ALERT_STATE_ACKNOWLEDGED: _ClassVar[AlertState]
    ALERT_STATE_RESOLVED: _ClassVar[AlertState]
ALERT_STATE_UNSPECIFIED: AlertState
ALERT_STATE_TRIGGERED: AlertState
ALERT_STATE_ESCALATED: AlertState
ALERT_STATE_ACKNOWLEDGED: AlertState
ALERT_STATE_RESOLVED: AlertState

class EscalateAction(_message.Message):
    __slots__ = ("delay_seconds", "target")
    DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    delay_seconds: float
    target: str
    def __init__(self, delay_seconds: _Optional[float] = ..., target: _Optional[str] = ...) -> None: ...

class TriggerRequest(_message.Message):
    __slots__ = ("alert_id", "severity", "title", "description", "agent_id", "hostname", "metric_json", "actions", "dedup_key", "policy")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    METRIC_JSON_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    DEDUP_KEY_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    severity: str
    title: str
    description: str
    agent_id: str
    hostname: str
    metric_json: str
    actions: _containers.RepeatedCompositeFieldContainer[EscalateAction]
    dedup_key: str
    policy: str
    def __init__(self, alert_id: _Optional[str] = ..., severity: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., agent_id: _Optional[str] = ..., hostname: _Optional[str] = ..., metric_json: _Optional[str] = ..., actions: _Optional[_Iterable[_Union[EscalateAction, _Mapping]]] = ..., dedup_key: _Optional[str] = ..., policy: _Optional[str] = ...) -> None: ...

class EscalationLevel(_message.Message):
    __slots__ = ("level", "at_seconds", "targets", "fired")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    AT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    FIRED_FIELD_NUMBER: _ClassVar[int]
    level: int
    at_seconds: float
    targets: _containers.RepeatedScalarFieldContainer[str]
    fired: bool
    def __init__(self, level: _Optional[int] = ..., at_seconds: _Optional[float] = ..., targets: _Optional[_Iterable[str]] = ..., fired: _Optional[bool] = ...) -> None: ...

class TimelineEntry(_message.Message):
    __slots__ = ("event", "at", "by", "level", "targets")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    event: str
    at: _timestamp_pb2.Timestamp
    by: str
    level: int
    targets: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, event: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., by: _Optional[str] = ..., level: _Optional[int] = ..., targets: _Optional[_Iterable[str]] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("alert_id", "state", "severity", "title", "description", "dedup_key", "policy", "data_json", "created_at", "updated_at", "levels_fired", "plan", "next_escalation_at", "trigger_count", "acknowledged_by", "acknowledged_at", "resolved_by", "resolved_at", "timeline")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DEDUP_KEY_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIRED_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    NEXT_ESCALATION_AT_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_COUNT_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_BY_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_BY_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    state: AlertState
    severity: str
    title: str
    description: str
    dedup_key: str
    policy: str
    data_json: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    levels_fired: int
    plan: _containers.RepeatedCompositeFieldContainer[EscalationLevel]
    next_escalation_at: _timestamp_pb2.Timestamp
    trigger_count: int
    acknowledged_by: str
    acknowledged_at: _timestamp_pb2.Timestamp
    resolved_by: str
    resolved_at: _timestamp_pb2.Timestamp
    timeline: _containers.RepeatedCompositeFieldContainer[TimelineEntry]
    def __init__(self, alert_id: _Optional[str] = ..., state: _Optional[_Union[AlertState, str]] = ..., severity: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., dedup_key: _Optional[str] = ..., policy: _Optional[str] = ..., data_json: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., levels_fired: _Optional[int] = ..., plan: _Optional[_Iterable[_Union[EscalationLevel, _Mapping]]] = ..., next_escalation_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trigger_count: _Optional[int] = ..., acknowledged_by: _Optional[str] = ..., acknowledged_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_by: _Optional[str] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., timeline: _Optional[_Iterable[_Union[TimelineEntry, _Mapping]]] = ...) -> None: ...

class TriggerResponse(_message.Message):
    __slots__ = ("alert", "created")
    ALERT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    alert: Alert
    created: bool
    def __init__(self, alert: _Optional[_Union[Alert, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class AcknowledgeRequest(_message.Message):
    __slots__ = ("alert_id", "by")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    by: str
    def __init__(self, alert_id: _Optional[str] = ..., by: _Optional[str] = ...) -> None: ...

class AcknowledgeResponse(_message.Message):
    __slots__ = ("alert", "changed")
    ALERT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    alert: Alert
    changed: bool
    def __init__(self, alert: _Optional[_Union[Alert, _Mapping]] = ..., changed: _Optional[bool] = ...) -> None: ...

class ResolveRequest(_message.Message):
    __slots__ = ("alert_id", "by")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    by: str
    def __init__(self, alert_id: _Optional[str] = ..., by: _Optional[str] = ...) -> None: ...

class ResolveResponse(_message.Message):
    __slots__ = ("alert", "changed")
    ALERT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    alert: Alert
    changed: bool
    def __init__(self, alert: _Optional[_Union[Alert, _Mapping]] = ..., changed: _Optional[bool] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("alert_id",)
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    def __init__(self, alert_id: _Optional[str] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("alert",)
    ALERT_FIELD_NUMBER: _ClassVar[int]
    alert: Alert
    def __init__(self, alert: _Optional[_Union[Alert, _Mapping]] = ...) -> None: ...

class ListActiveRequest(_message.Message):
    __slots__ = ("severities", "states", "target", "limit", "page_token")
    SEVERITIES_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    severities: _containers.RepeatedScalarFieldContainer[str]
    states: _containers.RepeatedScalarFieldContainer[AlertState]
    target: str
    limit: int
    page_token: str
    def __init__(self, severities: _Optional[_Iterable[str]] = ..., states: _Optional[_Iterable[_Union[AlertState, str]]] = ..., target: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListActiveResponse(_message.Message):
    __slots__ = ("alerts", "next_page_token")
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    next_page_token: str
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
