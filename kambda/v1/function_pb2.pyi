from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FunctionConfig(_message.Message):
    __slots__ = ("name", "runtime", "handler", "role", "description", "timeout", "memory_size", "environment", "code_sha256", "code_size", "last_modified", "revision_id", "version", "state", "state_reason", "state_reason_code", "last_update_status", "package_type", "architectures", "ephemeral_storage", "layers", "tracing_mode", "log_format", "log_group", "tags", "max_environments", "reserved_concurrency", "provisioned_concurrency", "provisioned_last_modified", "snap_start", "event_invoke_config", "dead_letter_target", "last_published", "published_from", "policies", "runtime_update_mode", "runtime_version_arn")
    class EnvironmentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class PoliciesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: PolicyStatements
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[PolicyStatements, _Mapping]] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_SIZE_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    CODE_SHA256_FIELD_NUMBER: _ClassVar[int]
    CODE_SIZE_FIELD_NUMBER: _ClassVar[int]
    LAST_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_REASON_FIELD_NUMBER: _ClassVar[int]
    STATE_REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATE_STATUS_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURES_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_STORAGE_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    TRACING_MODE_FIELD_NUMBER: _ClassVar[int]
    LOG_FORMAT_FIELD_NUMBER: _ClassVar[int]
    LOG_GROUP_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    MAX_ENVIRONMENTS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    PROVISIONED_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    PROVISIONED_LAST_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    SNAP_START_FIELD_NUMBER: _ClassVar[int]
    EVENT_INVOKE_CONFIG_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_TARGET_FIELD_NUMBER: _ClassVar[int]
    LAST_PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_FROM_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_UPDATE_MODE_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_VERSION_ARN_FIELD_NUMBER: _ClassVar[int]
    name: str
    runtime: str
    handler: str
    role: str
    description: str
    timeout: int
    memory_size: int
    environment: _containers.ScalarMap[str, str]
    code_sha256: str
    code_size: int
    last_modified: str
    revision_id: str
    version: str
    state: str
    state_reason: str
    state_reason_code: str
    last_update_status: str
    package_type: str
    architectures: _containers.RepeatedScalarFieldContainer[str]
    ephemeral_storage: int
    layers: _containers.RepeatedScalarFieldContainer[str]
    tracing_mode: str
    log_format: str
    log_group: str
    tags: _containers.ScalarMap[str, str]
    max_environments: int
    reserved_concurrency: int
    provisioned_concurrency: int
    provisioned_last_modified: str
    snap_start: str
    event_invoke_config: EventInvokeConfig
    dead_letter_target: str
    last_published: int
    published_from: str
    policies: _containers.MessageMap[str, PolicyStatements]
    runtime_update_mode: str
    runtime_version_arn: str
    def __init__(self, name: _Optional[str] = ..., runtime: _Optional[str] = ..., handler: _Optional[str] = ..., role: _Optional[str] = ..., description: _Optional[str] = ..., timeout: _Optional[int] = ..., memory_size: _Optional[int] = ..., environment: _Optional[_Mapping[str, str]] = ..., code_sha256: _Optional[str] = ..., code_size: _Optional[int] = ..., last_modified: _Optional[str] = ..., revision_id: _Optional[str] = ..., version: _Optional[str] = ..., state: _Optional[str] = ..., state_reason: _Optional[str] = ..., state_reason_code: _Optional[str] = ..., last_update_status: _Optional[str] = ..., package_type: _Optional[str] = ..., architectures: _Optional[_Iterable[str]] = ..., ephemeral_storage: _Optional[int] = ..., layers: _Optional[_Iterable[str]] = ..., tracing_mode: _Optional[str] = ..., log_format: _Optional[str] = ..., log_group: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., max_environments: _Optional[int] = ..., reserved_concurrency: _Optional[int] = ..., provisioned_concurrency: _Optional[int] = ..., provisioned_last_modified: _Optional[str] = ..., snap_start: _Optional[str] = ..., event_invoke_config: _Optional[_Union[EventInvokeConfig, _Mapping]] = ..., dead_letter_target: _Optional[str] = ..., last_published: _Optional[int] = ..., published_from: _Optional[str] = ..., policies: _Optional[_Mapping[str, PolicyStatements]] = ..., runtime_update_mode: _Optional[str] = ..., runtime_version_arn: _Optional[str] = ...) -> None: ...

class PolicyStatements(_message.Message):
    __slots__ = ("statements",)
    STATEMENTS_FIELD_NUMBER: _ClassVar[int]
    statements: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, statements: _Optional[_Iterable[str]] = ...) -> None: ...

class Alias(_message.Message):
    __slots__ = ("function", "name", "function_version", "description", "additional_version_weights", "revision_id")
    class AdditionalVersionWeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_VERSION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ADDITIONAL_VERSION_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    function: str
    name: str
    function_version: str
    description: str
    additional_version_weights: _containers.ScalarMap[str, float]
    revision_id: str
    def __init__(self, function: _Optional[str] = ..., name: _Optional[str] = ..., function_version: _Optional[str] = ..., description: _Optional[str] = ..., additional_version_weights: _Optional[_Mapping[str, float]] = ..., revision_id: _Optional[str] = ...) -> None: ...

class EventInvokeConfig(_message.Message):
    __slots__ = ("maximum_retry_attempts", "maximum_event_age", "on_success", "on_failure", "last_modified")
    MAXIMUM_RETRY_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_EVENT_AGE_FIELD_NUMBER: _ClassVar[int]
    ON_SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ON_FAILURE_FIELD_NUMBER: _ClassVar[int]
    LAST_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    maximum_retry_attempts: int
    maximum_event_age: int
    on_success: str
    on_failure: str
    last_modified: str
    def __init__(self, maximum_retry_attempts: _Optional[int] = ..., maximum_event_age: _Optional[int] = ..., on_success: _Optional[str] = ..., on_failure: _Optional[str] = ..., last_modified: _Optional[str] = ...) -> None: ...
