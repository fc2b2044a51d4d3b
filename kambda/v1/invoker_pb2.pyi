from kambda.v1 import function_pb2 as _function_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Assignment(_message.Message):
    __slots__ = ("config", "desired", "provisioned", "deleted", "nats_token", "code_token", "role_credentials")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    PROVISIONED_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    NATS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CODE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ROLE_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    config: _function_pb2.FunctionConfig
    desired: int
    provisioned: int
    deleted: bool
    nats_token: str
    code_token: str
    role_credentials: RoleCredentials
    def __init__(self, config: _Optional[_Union[_function_pb2.FunctionConfig, _Mapping]] = ..., desired: _Optional[int] = ..., provisioned: _Optional[int] = ..., deleted: _Optional[bool] = ..., nats_token: _Optional[str] = ..., code_token: _Optional[str] = ..., role_credentials: _Optional[_Union[RoleCredentials, _Mapping]] = ...) -> None: ...

class RoleCredentials(_message.Message):
    __slots__ = ("access_key_id", "secret_access_key", "session_token", "expires")
    ACCESS_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_ACCESS_KEY_FIELD_NUMBER: _ClassVar[int]
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    access_key_id: str
    secret_access_key: str
    session_token: str
    expires: int
    def __init__(self, access_key_id: _Optional[str] = ..., secret_access_key: _Optional[str] = ..., session_token: _Optional[str] = ..., expires: _Optional[int] = ...) -> None: ...

class AssignmentAck(_message.Message):
    __slots__ = ("invoker_id", "stats")
    INVOKER_ID_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    invoker_id: str
    stats: FunctionStats
    def __init__(self, invoker_id: _Optional[str] = ..., stats: _Optional[_Union[FunctionStats, _Mapping]] = ...) -> None: ...

class FunctionStats(_message.Message):
    __slots__ = ("function", "version", "environments", "busy", "idle", "cold_starts")
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENTS_FIELD_NUMBER: _ClassVar[int]
    BUSY_FIELD_NUMBER: _ClassVar[int]
    IDLE_FIELD_NUMBER: _ClassVar[int]
    COLD_STARTS_FIELD_NUMBER: _ClassVar[int]
    function: str
    version: str
    environments: int
    busy: int
    idle: int
    cold_starts: int
    def __init__(self, function: _Optional[str] = ..., version: _Optional[str] = ..., environments: _Optional[int] = ..., busy: _Optional[int] = ..., idle: _Optional[int] = ..., cold_starts: _Optional[int] = ...) -> None: ...

class InvokerStats(_message.Message):
    __slots__ = ("invoker_id", "functions", "time_ms", "hello", "assign_key", "nats_disconnects")
    INVOKER_ID_FIELD_NUMBER: _ClassVar[int]
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    ASSIGN_KEY_FIELD_NUMBER: _ClassVar[int]
    NATS_DISCONNECTS_FIELD_NUMBER: _ClassVar[int]
    invoker_id: str
    functions: _containers.RepeatedCompositeFieldContainer[FunctionStats]
    time_ms: int
    hello: bool
    assign_key: str
    nats_disconnects: int
    def __init__(self, invoker_id: _Optional[str] = ..., functions: _Optional[_Iterable[_Union[FunctionStats, _Mapping]]] = ..., time_ms: _Optional[int] = ..., hello: _Optional[bool] = ..., assign_key: _Optional[str] = ..., nats_disconnects: _Optional[int] = ...) -> None: ...

class ScaleEvent(_message.Message):
    __slots__ = ("function", "version", "desired", "environments", "queued", "panic")
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENTS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    PANIC_FIELD_NUMBER: _ClassVar[int]
    function: str
    version: str
    desired: int
    environments: int
    queued: int
    panic: bool
    def __init__(self, function: _Optional[str] = ..., version: _Optional[str] = ..., desired: _Optional[int] = ..., environments: _Optional[int] = ..., queued: _Optional[int] = ..., panic: _Optional[bool] = ...) -> None: ...
