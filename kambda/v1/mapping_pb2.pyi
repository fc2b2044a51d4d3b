from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class EventSourceMapping(_message.Message):
    __slots__ = ("uuid", "function", "event_source_arn", "batch_size", "batching_window", "enabled", "function_response_types", "maximum_retry_attempts", "on_failure", "maximum_concurrency", "last_modified", "state", "state_transition_reason", "starting_position", "bisect_batch_on_function_error", "maximum_record_age", "parallelization_factor", "filter_criteria")
    UUID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    EVENT_SOURCE_ARN_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    BATCHING_WINDOW_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_RESPONSE_TYPES_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_RETRY_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ON_FAILURE_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    LAST_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_TRANSITION_REASON_FIELD_NUMBER: _ClassVar[int]
    STARTING_POSITION_FIELD_NUMBER: _ClassVar[int]
    BISECT_BATCH_ON_FUNCTION_ERROR_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_RECORD_AGE_FIELD_NUMBER: _ClassVar[int]
    PARALLELIZATION_FACTOR_FIELD_NUMBER: _ClassVar[int]
    FILTER_CRITERIA_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    function: str
    event_source_arn: str
    batch_size: int
    batching_window: float
    enabled: bool
    function_response_types: _containers.RepeatedScalarFieldContainer[str]
    maximum_retry_attempts: int
    on_failure: str
    maximum_concurrency: int
    last_modified: float
    state: str
    state_transition_reason: str
    starting_position: str
    bisect_batch_on_function_error: bool
    maximum_record_age: int
    parallelization_factor: int
    filter_criteria: str
    def __init__(self, uuid: _Optional[str] = ..., function: _Optional[str] = ..., event_source_arn: _Optional[str] = ..., batch_size: _Optional[int] = ..., batching_window: _Optional[float] = ..., enabled: _Optional[bool] = ..., function_response_types: _Optional[_Iterable[str]] = ..., maximum_retry_attempts: _Optional[int] = ..., on_failure: _Optional[str] = ..., maximum_concurrency: _Optional[int] = ..., last_modified: _Optional[float] = ..., state: _Optional[str] = ..., state_transition_reason: _Optional[str] = ..., starting_position: _Optional[str] = ..., bisect_batch_on_function_error: _Optional[bool] = ..., maximum_record_age: _Optional[int] = ..., parallelization_factor: _Optional[int] = ..., filter_criteria: _Optional[str] = ...) -> None: ...
