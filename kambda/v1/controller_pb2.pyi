from kambda.v1 import function_pb2 as _function_pb2
from kambda.v1 import mapping_pb2 as _mapping_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventInvokeConfigRequest(_message.Message):
    __slots__ = ("name", "qualifier", "config", "mode", "fields")
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUALIFIER_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    qualifier: str
    config: _function_pb2.EventInvokeConfig
    mode: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., qualifier: _Optional[str] = ..., config: _Optional[_Union[_function_pb2.EventInvokeConfig, _Mapping]] = ..., mode: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ...) -> None: ...

class ChangeFunctionRequest(_message.Message):
    __slots__ = ("name", "qualifier", "revision_id", "tag", "untag", "add_statement", "remove_statement", "runtime_update_mode", "runtime_version_arn")
    class TagEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUALIFIER_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    UNTAG_FIELD_NUMBER: _ClassVar[int]
    ADD_STATEMENT_FIELD_NUMBER: _ClassVar[int]
    REMOVE_STATEMENT_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_UPDATE_MODE_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_VERSION_ARN_FIELD_NUMBER: _ClassVar[int]
    name: str
    qualifier: str
    revision_id: str
    tag: _containers.ScalarMap[str, str]
    untag: _containers.RepeatedScalarFieldContainer[str]
    add_statement: str
    remove_statement: str
    runtime_update_mode: str
    runtime_version_arn: str
    def __init__(self, name: _Optional[str] = ..., qualifier: _Optional[str] = ..., revision_id: _Optional[str] = ..., tag: _Optional[_Mapping[str, str]] = ..., untag: _Optional[_Iterable[str]] = ..., add_statement: _Optional[str] = ..., remove_statement: _Optional[str] = ..., runtime_update_mode: _Optional[str] = ..., runtime_version_arn: _Optional[str] = ...) -> None: ...

class MetricsResponse(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: bytes
    def __init__(self, text: _Optional[bytes] = ...) -> None: ...

class ConcurrencyRequest(_message.Message):
    __slots__ = ("name", "qualifier", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUALIFIER_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    qualifier: str
    value: int
    def __init__(self, name: _Optional[str] = ..., qualifier: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...

class CreateFunctionRequest(_message.Message):
    __slots__ = ("config", "zip_file")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    ZIP_FILE_FIELD_NUMBER: _ClassVar[int]
    config: _function_pb2.FunctionConfig
    zip_file: bytes
    def __init__(self, config: _Optional[_Union[_function_pb2.FunctionConfig, _Mapping]] = ..., zip_file: _Optional[bytes] = ...) -> None: ...

class GetFunctionRequest(_message.Message):
    __slots__ = ("name", "qualifier")
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUALIFIER_FIELD_NUMBER: _ClassVar[int]
    name: str
    qualifier: str
    def __init__(self, name: _Optional[str] = ..., qualifier: _Optional[str] = ...) -> None: ...

class ListFunctionsRequest(_message.Message):
    __slots__ = ("marker", "max_items", "all_versions")
    MARKER_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    ALL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    marker: str
    max_items: int
    all_versions: bool
    def __init__(self, marker: _Optional[str] = ..., max_items: _Optional[int] = ..., all_versions: _Optional[bool] = ...) -> None: ...

class ListFunctionsResponse(_message.Message):
    __slots__ = ("functions", "next_marker")
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_MARKER_FIELD_NUMBER: _ClassVar[int]
    functions: _containers.RepeatedCompositeFieldContainer[_function_pb2.FunctionConfig]
    next_marker: str
    def __init__(self, functions: _Optional[_Iterable[_Union[_function_pb2.FunctionConfig, _Mapping]]] = ..., next_marker: _Optional[str] = ...) -> None: ...

class UpdateFunctionCodeRequest(_message.Message):
    __slots__ = ("name", "zip_file", "revision_id", "dry_run")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ZIP_FILE_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    name: str
    zip_file: bytes
    revision_id: str
    dry_run: bool
    def __init__(self, name: _Optional[str] = ..., zip_file: _Optional[bytes] = ..., revision_id: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class UpdateFunctionConfigurationRequest(_message.Message):
    __slots__ = ("name", "config", "update_mask", "revision_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    config: _function_pb2.FunctionConfig
    update_mask: _containers.RepeatedScalarFieldContainer[str]
    revision_id: str
    def __init__(self, name: _Optional[str] = ..., config: _Optional[_Union[_function_pb2.FunctionConfig, _Mapping]] = ..., update_mask: _Optional[_Iterable[str]] = ..., revision_id: _Optional[str] = ...) -> None: ...

class DeleteFunctionRequest(_message.Message):
    __slots__ = ("name", "qualifier")
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUALIFIER_FIELD_NUMBER: _ClassVar[int]
    name: str
    qualifier: str
    def __init__(self, name: _Optional[str] = ..., qualifier: _Optional[str] = ...) -> None: ...

class DeleteFunctionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ActivateRequest(_message.Message):
    __slots__ = ("function", "version", "in_flight")
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    function: str
    version: str
    in_flight: int
    def __init__(self, function: _Optional[str] = ..., version: _Optional[str] = ..., in_flight: _Optional[int] = ...) -> None: ...

class ActivateResponse(_message.Message):
    __slots__ = ("desired",)
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    desired: int
    def __init__(self, desired: _Optional[int] = ...) -> None: ...

class FunctionStatus(_message.Message):
    __slots__ = ("function", "version", "environments", "busy", "queued", "desired")
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENTS_FIELD_NUMBER: _ClassVar[int]
    BUSY_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    function: str
    version: str
    environments: int
    busy: int
    queued: int
    desired: int
    def __init__(self, function: _Optional[str] = ..., version: _Optional[str] = ..., environments: _Optional[int] = ..., busy: _Optional[int] = ..., queued: _Optional[int] = ..., desired: _Optional[int] = ...) -> None: ...

class PingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PingResponse(_message.Message):
    __slots__ = ("nats_connected",)
    NATS_CONNECTED_FIELD_NUMBER: _ClassVar[int]
    nats_connected: bool
    def __init__(self, nats_connected: _Optional[bool] = ...) -> None: ...

class MappingRequest(_message.Message):
    __slots__ = ("op", "mapping", "fields", "uuid", "function", "event_source_arn", "marker", "max_items")
    OP_FIELD_NUMBER: _ClassVar[int]
    MAPPING_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    EVENT_SOURCE_ARN_FIELD_NUMBER: _ClassVar[int]
    MARKER_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    op: str
    mapping: _mapping_pb2.EventSourceMapping
    fields: _containers.RepeatedScalarFieldContainer[str]
    uuid: str
    function: str
    event_source_arn: str
    marker: str
    max_items: int
    def __init__(self, op: _Optional[str] = ..., mapping: _Optional[_Union[_mapping_pb2.EventSourceMapping, _Mapping]] = ..., fields: _Optional[_Iterable[str]] = ..., uuid: _Optional[str] = ..., function: _Optional[str] = ..., event_source_arn: _Optional[str] = ..., marker: _Optional[str] = ..., max_items: _Optional[int] = ...) -> None: ...

class MappingResponse(_message.Message):
    __slots__ = ("mappings", "next_marker")
    MAPPINGS_FIELD_NUMBER: _ClassVar[int]
    NEXT_MARKER_FIELD_NUMBER: _ClassVar[int]
    mappings: _containers.RepeatedCompositeFieldContainer[_mapping_pb2.EventSourceMapping]
    next_marker: str
    def __init__(self, mappings: _Optional[_Iterable[_Union[_mapping_pb2.EventSourceMapping, _Mapping]]] = ..., next_marker: _Optional[str] = ...) -> None: ...

class PublishVersionRequest(_message.Message):
    __slots__ = ("name", "code_sha256", "description", "revision_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CODE_SHA256_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    code_sha256: str
    description: str
    revision_id: str
    def __init__(self, name: _Optional[str] = ..., code_sha256: _Optional[str] = ..., description: _Optional[str] = ..., revision_id: _Optional[str] = ...) -> None: ...

class ListVersionsRequest(_message.Message):
    __slots__ = ("name", "marker", "max_items")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MARKER_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    marker: str
    max_items: int
    def __init__(self, name: _Optional[str] = ..., marker: _Optional[str] = ..., max_items: _Optional[int] = ...) -> None: ...

class AliasRequest(_message.Message):
    __slots__ = ("op", "name", "alias", "fields", "revision_id", "function_version", "marker", "max_items")
    OP_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_VERSION_FIELD_NUMBER: _ClassVar[int]
    MARKER_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    op: str
    name: str
    alias: _function_pb2.Alias
    fields: _containers.RepeatedScalarFieldContainer[str]
    revision_id: str
    function_version: str
    marker: str
    max_items: int
    def __init__(self, op: _Optional[str] = ..., name: _Optional[str] = ..., alias: _Optional[_Union[_function_pb2.Alias, _Mapping]] = ..., fields: _Optional[_Iterable[str]] = ..., revision_id: _Optional[str] = ..., function_version: _Optional[str] = ..., marker: _Optional[str] = ..., max_items: _Optional[int] = ...) -> None: ...

class AliasResponse(_message.Message):
    __slots__ = ("aliases", "next_marker")
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    NEXT_MARKER_FIELD_NUMBER: _ClassVar[int]
    aliases: _containers.RepeatedCompositeFieldContainer[_function_pb2.Alias]
    next_marker: str
    def __init__(self, aliases: _Optional[_Iterable[_Union[_function_pb2.Alias, _Mapping]]] = ..., next_marker: _Optional[str] = ...) -> None: ...
