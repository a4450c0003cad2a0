from roomgate.auth.v1 import auth_pb2 as _auth_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_UNSPECIFIED: _ClassVar[Action]
    ACTION_SUBSCRIBE: _ClassVar[Action]
    ACTION_PUBLISH: _ClassVar[Action]

class Relation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RELATION_UNSPECIFIED: _ClassVar[Relation]
    RELATION_AGENT_GROUP: _ClassVar[Relation]
    RELATION_USER_GROUP: _ClassVar[Relation]
    RELATION_USER_TEAM: _ClassVar[Relation]
ACTION_UNSPECIFIED: Action
ACTION_SUBSCRIBE: Action
ACTION_PUBLISH: Action
RELATION_UNSPECIFIED: Relation
RELATION_AGENT_GROUP: Relation
RELATION_USER_GROUP: Relation
RELATION_USER_TEAM: Relation

class AuthorizeRequest(_message.Message):
    __slots__ = ("principal", "room", "action", "message_type")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    ROOM_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    principal: _auth_pb2.Principal
    room: str
    action: Action
    message_type: str
    def __init__(self, principal: _Optional[_Union[_auth_pb2.Principal, _Mapping]] = ..., room: _Optional[str] = ..., action: _Optional[_Union[Action, str]] = ..., message_type: _Optional[str] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("room", "action", "allowed", "reason", "message_type")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    room: str
    action: Action
    allowed: bool
    reason: str
    message_type: str
    def __init__(self, room: _Optional[str] = ..., action: _Optional[_Union[Action, str]] = ..., allowed: _Optional[bool] = ..., reason: _Optional[str] = ..., message_type: _Optional[str] = ...) -> None: ...

class AuthorizeResponse(_message.Message):
    __slots__ = ("decision",)
    DECISION_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ...) -> None: ...

class RoomAction(_message.Message):
    __slots__ = ("room", "action", "message_type")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    room: str
    action: Action
    message_type: str
    def __init__(self, room: _Optional[str] = ..., action: _Optional[_Union[Action, str]] = ..., message_type: _Optional[str] = ...) -> None: ...

class AuthorizeManyRequest(_message.Message):
    __slots__ = ("principal", "items")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    principal: _auth_pb2.Principal
    items: _containers.RepeatedCompositeFieldContainer[RoomAction]
    def __init__(self, principal: _Optional[_Union[_auth_pb2.Principal, _Mapping]] = ..., items: _Optional[_Iterable[_Union[RoomAction, _Mapping]]] = ...) -> None: ...

class AuthorizeManyResponse(_message.Message):
    __slots__ = ("decisions",)
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    def __init__(self, decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ...) -> None: ...

class AuthorizeBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[AuthorizeRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[AuthorizeRequest, _Mapping]]] = ...) -> None: ...

class AuthorizeBatchResponse(_message.Message):
    __slots__ = ("decisions",)
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    def __init__(self, decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ...) -> None: ...

class AclEntry(_message.Message):
    __slots__ = ("relation", "subject_id", "object_id")
    RELATION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    relation: Relation
    subject_id: str
    object_id: str
    def __init__(self, relation: _Optional[_Union[Relation, str]] = ..., subject_id: _Optional[str] = ..., object_id: _Optional[str] = ...) -> None: ...

class ChangeAclRequest(_message.Message):
    __slots__ = ("add", "remove")
    ADD_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    add: _containers.RepeatedCompositeFieldContainer[AclEntry]
    remove: _containers.RepeatedCompositeFieldContainer[AclEntry]
    def __init__(self, add: _Optional[_Iterable[_Union[AclEntry, _Mapping]]] = ..., remove: _Optional[_Iterable[_Union[AclEntry, _Mapping]]] = ...) -> None: ...

class ChangeAclResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class ListAclRequest(_message.Message):
    __slots__ = ("relation", "subject_id")
    RELATION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    relation: Relation
    subject_id: str
    def __init__(self, relation: _Optional[_Union[Relation, str]] = ..., subject_id: _Optional[str] = ...) -> None: ...

class ListAclResponse(_message.Message):
    __slots__ = ("entries", "version")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AclEntry]
    version: int
    def __init__(self, entries: _Optional[_Iterable[_Union[AclEntry, _Mapping]]] = ..., version: _Optional[int] = ...) -> None: ...
