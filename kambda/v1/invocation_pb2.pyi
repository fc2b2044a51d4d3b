from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Invocation(_message.Message):
    __slots__ = ("request_id", "function", "version", "invoked_arn", "start_deadline_ms", "payload", "client_context", "cognito_identity", "trace_id", "reply_to", "log_tail", "invocation_type", "enqueued_ms", "code_sha256", "notify_start", "maximum_retry_attempts", "maximum_event_age", "dead_letter_arn", "dead_letter_headers")
    class DeadLetterHeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INVOKED_ARN_FIELD_NUMBER: _ClassVar[int]
    START_DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    COGNITO_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    LOG_TAIL_FIELD_NUMBER: _ClassVar[int]
    INVOCATION_TYPE_FIELD_NUMBER: _ClassVar[int]
    ENQUEUED_MS_FIELD_NUMBER: _ClassVar[int]
    CODE_SHA256_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_START_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_RETRY_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_EVENT_AGE_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_ARN_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_HEADERS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    function: str
    version: str
    invoked_arn: str
    start_deadline_ms: int
    payload: bytes
    client_context: str
    cognito_identity: str
    trace_id: str
    reply_to: str
    log_tail: bool
    invocation_type: str
    enqueued_ms: int
    code_sha256: str
    notify_start: bool
    maximum_retry_attempts: int
    maximum_event_age: int
    dead_letter_arn: str
    dead_letter_headers: _containers.ScalarMap[str, str]
    def __init__(self, request_id: _Optional[str] = ..., function: _Optional[str] = ..., version: _Optional[str] = ..., invoked_arn: _Optional[str] = ..., start_deadline_ms: _Optional[int] = ..., payload: _Optional[bytes] = ..., client_context: _Optional[str] = ..., cognito_identity: _Optional[str] = ..., trace_id: _Optional[str] = ..., reply_to: _Optional[str] = ..., log_tail: _Optional[bool] = ..., invocation_type: _Optional[str] = ..., enqueued_ms: _Optional[int] = ..., code_sha256: _Optional[str] = ..., notify_start: _Optional[bool] = ..., maximum_retry_attempts: _Optional[int] = ..., maximum_event_age: _Optional[int] = ..., dead_letter_arn: _Optional[str] = ..., dead_letter_headers: _Optional[_Mapping[str, str]] = ...) -> None: ...

class InvocationResult(_message.Message):
    __slots__ = ("request_id", "payload", "function_error", "log_tail", "executed_version", "cold_start", "duration_ms", "init_duration_ms", "error_code", "error_message")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_ERROR_FIELD_NUMBER: _ClassVar[int]
    LOG_TAIL_FIELD_NUMBER: _ClassVar[int]
    EXECUTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    COLD_START_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    INIT_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    payload: bytes
    function_error: str
    log_tail: bytes
    executed_version: str
    cold_start: bool
    duration_ms: float
    init_duration_ms: float
    error_code: str
    error_message: str
    def __init__(self, request_id: _Optional[str] = ..., payload: _Optional[bytes] = ..., function_error: _Optional[str] = ..., log_tail: _Optional[bytes] = ..., executed_version: _Optional[str] = ..., cold_start: _Optional[bool] = ..., duration_ms: _Optional[float] = ..., init_duration_ms: _Optional[float] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class LogBatch(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[LogRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[LogRecord, _Mapping]]] = ...) -> None: ...

class LogRecord(_message.Message):
    __slots__ = ("function", "version", "request_id", "time_ms", "environment_id", "text")
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    function: str
    version: str
    request_id: str
    time_ms: int
    environment_id: str
    text: str
    def __init__(self, function: _Optional[str] = ..., version: _Optional[str] = ..., request_id: _Optional[str] = ..., time_ms: _Optional[int] = ..., environment_id: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...
