"""Round trips through botocore itself: botocore's serializer builds the request, kambda.aws parses it; kambda.aws
serialises the answer, botocore's parser reads it. No wire format is written by hand here."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import botocore.awsrequest
import botocore.parsers
import botocore.serialize
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from kambda.aws import errors, model, protocol
from kambda.aws.protocol import faults, xmlbody

T1 = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
T2 = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)


def wire(service: str, operation: str, params: dict[str, Any]) -> tuple[str, str, dict[str, list[str]],
                                                                        CIMultiDict[str], bytes]:
    """What botocore would send for ``operation(**params)``: method, raw path, query, headers, body."""
    sm = model.service_model(service)
    op = sm.operation_model(operation)
    request = botocore.serialize.create_serializer(model.protocol_of(sm)).serialize_to_request(params, op)
    botocore.awsrequest.prepare_request_dict(request, "https://kambda.test")
    prepared = botocore.awsrequest.create_request_object(request).prepare()
    url = urlsplit(prepared.url)
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode()
    elif not isinstance(body, bytes):
        body = body.read()
    headers = CIMultiDict({k: v.decode() if isinstance(v, bytes) else v for k, v in prepared.headers.items()})
    return prepared.method, url.path, parse_qs(url.query, keep_blank_values=True), headers, body


def round_trip_request(service: str, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    method, path, query, headers, body = wire(service, operation, params)
    index = model.index(service)
    op = model.service_model(service).operation_model(operation)
    if index.protocol.startswith("rest"):
        found = index.match(method, path, query, headers)
        assert found is not None and found[0].name == operation, found
    elif index.protocol == "json":
        assert index.by_target(headers["X-Amz-Target"]) is op
    return protocol.parse_request(op, method, path, query, headers, body)


def round_trip_response(service: str, operation: str, result: dict[str, Any]) -> dict[str, Any]:
    op = model.service_model(service).operation_model(operation)
    status, headers, body = protocol.serialize_response(op, result, "req-1")
    parser = botocore.parsers.create_parser(model.protocol_of(op.service_model))
    parsed = parser.parse({"status_code": status, "headers": botocore.awsrequest.HeadersDict(headers),
                           "body": body}, op.output_shape)
    parsed.pop("ResponseMetadata", None)
    return parsed  # type: ignore[no-any-return]


def parsed_error(service: str, err: errors.KambdaError) -> dict[str, Any]:
    sm = model.service_model(service)
    status, headers, body = protocol.serialize_error(sm, err, "req-9")
    parser = botocore.parsers.create_parser(model.protocol_of(sm))
    return parser.parse({"status_code": status, "headers": botocore.awsrequest.HeadersDict(headers),
                         "body": body}, None)  # type: ignore[no-any-return]


# -- rest-json: Lambda, API Gateway -------------------------------------------------------------------------------

def test_lambda_invoke_headers_payload_and_arn_label() -> None:
    arn = "arn:aws:lambda:us-east-1:123456789012:function:f"
    params = {"FunctionName": arn, "InvocationType": "RequestResponse", "LogType": "Tail",
              "ClientContext": "eyJhIjoxfQ==", "Payload": b'{"x": 1}', "Qualifier": "live"}
    assert round_trip_request("lambda", "Invoke", params) == params
    result = {"StatusCode": 200, "FunctionError": "Unhandled", "LogResult": "bG9n", "Payload": b'{"ok":true}',
              "ExecutedVersion": "3"}
    parsed = round_trip_response("lambda", "Invoke", result)
    assert parsed == {**result, "Payload": '{"ok":true}'}  # botocore hands a non-streaming payload over as text


def test_lambda_create_function_nested_blob_map_bool_int() -> None:
    params = {"FunctionName": "f", "Runtime": "python3.12", "Role": "arn:aws:iam::1:role/r", "Handler": "a.b",
              "Code": {"ZipFile": b"PK\x03\x04\x00\xff"}, "Timeout": 30, "MemorySize": 256, "Publish": True,
              "Environment": {"Variables": {"A": "1", "B": "two"}}, "Tags": {"team": "x"},
              "Architectures": ["arm64"], "Layers": ["arn:l:1", "arn:l:2"]}
    assert round_trip_request("lambda", "CreateFunction", params) == params
    result = {"FunctionName": "f", "Timeout": 30, "MemorySize": 256, "CodeSize": 6,
              "Environment": {"Variables": {"A": "1"}}, "LastModified": "2024-01-02T03:04:05.000+0000"}
    assert round_trip_response("lambda", "CreateFunction", result) == result
    op = model.service_model("lambda").operation_model("CreateFunction")
    assert protocol.serialize_response(op, result)[0] == 201


def test_lambda_list_functions_querystring_and_empty_trailing_slash() -> None:
    params = {"MasterRegion": "ALL", "FunctionVersion": "ALL", "Marker": "m 1/2", "MaxItems": 10}
    assert round_trip_request("lambda", "ListFunctions", params) == params
    assert round_trip_request("lambda", "ListFunctions", {}) == {}
    result = {"Functions": [{"FunctionName": "a", "Timeout": 3}, {"FunctionName": "b"}], "NextMarker": "n"}
    assert round_trip_response("lambda", "ListFunctions", result) == result


def test_lambda_delete_alias_is_204_without_body() -> None:
    op = model.service_model("lambda").operation_model("DeleteAlias")
    assert protocol.serialize_response(op, {}) == (204, {}, b"")


def test_apigateway_map_querystring_and_blob_payload() -> None:
    params = {"parameters": {"endpointConfigurationTypes": "REGIONAL", "ignore": "documentation"},
              "failOnWarnings": True, "body": b"openapi: 3.0.0"}
    assert round_trip_request("apigateway", "ImportRestApi", params) == params


def test_rest_json_malformed_body_is_lambdas_invalid_request_content() -> None:
    method, path, query, headers, _ = wire("lambda", "CreateFunction", {"FunctionName": "f", "Role": "r",
                                                                        "Code": {}})
    op = model.service_model("lambda").operation_model("CreateFunction")
    with pytest.raises(errors.InvalidRequestContent):
        protocol.parse_request(op, method, path, query, headers, b"{not json")
    with pytest.raises(errors.InvalidRequestContent):
        protocol.parse_request(op, method, path, query, headers, b'{"Timeout": "thirty"}')
    with pytest.raises(errors.InvalidRequestContent):
        protocol.parse_request(op, method, path, query, headers, b'{"Code": {"ZipFile": "%%%"}}')
    listing = model.service_model("lambda").operation_model("ListFunctions")
    with pytest.raises(errors.InvalidRequestContent):
        protocol.parse_request(listing, "GET", "/2015-03-31/functions/", {"MaxItems": ["ten"]}, {}, b"")


def test_rest_json_error_keeps_lambdas_body_bytes() -> None:
    err = errors.ResourceNotFound("Function not found: arn:f")
    status, headers, body = protocol.serialize_error(model.service_model("lambda"), err, "rid")
    assert (status, body) == (404, b'{"Type":"User","Message":"Function not found: arn:f"}')
    assert headers["x-amzn-ErrorType"] == "ResourceNotFoundException" and headers["x-amzn-RequestId"] == "rid"
    parsed = parsed_error("lambda", errors.TooManyRequests("slow down", Reason="ReservedFunctionConcurrent"))
    assert parsed["Error"]["Code"] == "TooManyRequestsException"
    assert parsed["Error"]["Message"] == "slow down"


# -- json 1.1 and 1.0 ---------------------------------------------------------------------------------------------

def test_events_put_events_json11() -> None:
    params = {"Entries": [{"Time": T1, "Source": "app", "Resources": ["r1", "r2"], "DetailType": "t",
                           "Detail": '{"a": 1}', "EventBusName": "default"}, {"Source": "b", "Time": T2}]}
    assert round_trip_request("events", "PutEvents", params) == params
    result = {"FailedEntryCount": 1, "Entries": [{"EventId": "e1"}, {"ErrorCode": "X", "ErrorMessage": "y"}]}
    assert round_trip_response("events", "PutEvents", result) == result
    op = model.service_model("events").operation_model("PutEvents")
    assert protocol.serialize_response(op, result)[1]["Content-Type"] == "application/x-amz-json-1.1"


def test_events_put_rule_and_malformed_is_serialization_exception() -> None:
    params = {"Name": "r", "ScheduleExpression": "rate(1 minute)", "State": "ENABLED",
              "Tags": [{"Key": "k", "Value": "v"}]}
    assert round_trip_request("events", "PutRule", params) == params
    assert round_trip_response("events", "PutRule", {"RuleArn": "arn:r"}) == {"RuleArn": "arn:r"}
    op = model.service_model("events").operation_model("PutRule")
    for body in (b"{", b'{"Name": 5}', b"[1]", b'{"Tags": {"Key": "k"}}'):
        with pytest.raises(faults.Serialization):
            protocol.parse_request(op, "POST", "/", {}, {}, body)
    parsed = parsed_error("events", errors.ResourceNotFound("Rule r does not exist."))
    assert parsed["Error"] == {"Code": "ResourceNotFoundException", "Message": "Rule r does not exist."}


def test_stepfunctions_json10_timestamps() -> None:
    params = {"stateMachineArn": "arn:sm", "name": "run-1", "input": '{"k": [1, 2]}', "traceHeader": "t"}
    assert round_trip_request("stepfunctions", "StartExecution", params) == params
    assert round_trip_response("stepfunctions", "StartExecution", {"executionArn": "arn:x", "startDate": T2}) == {
        "executionArn": "arn:x", "startDate": T2}
    result = {"executionArn": "arn:x", "stateMachineArn": "arn:sm", "status": "SUCCEEDED", "startDate": T1,
              "stopDate": T2, "input": "{}", "output": '{"r": 1}', "redriveCount": 0}
    assert round_trip_response("stepfunctions", "DescribeExecution", result) == result
    op = model.service_model("stepfunctions").operation_model("StartExecution")
    assert protocol.serialize_response(op, {})[1]["Content-Type"] == "application/x-amz-json-1.0"
    assert parsed_error("stepfunctions", faults.aws_error("ExecutionDoesNotExist", 400, "no"))["Error"]["Code"] == (
        "ExecutionDoesNotExist")


def test_dynamodb_attribute_values_blobs_sets_nesting() -> None:
    item = {"pk": {"S": "a"}, "n": {"N": "1.5"}, "b": {"B": b"\x00\x01\xfe"}, "ns": {"NS": ["1", "2"]},
            "bs": {"BS": [b"x", b"y"]}, "m": {"M": {"inner": {"L": [{"BOOL": True}, {"NULL": True}]}}}}
    params = {"TableName": "t", "Item": item, "ConditionExpression": "attribute_not_exists(pk)",
              "ReturnValues": "ALL_OLD"}
    assert round_trip_request("dynamodb", "PutItem", params) == params
    assert round_trip_response("dynamodb", "PutItem", {"Attributes": item}) == {"Attributes": item}


# -- rest-xml: S3 -------------------------------------------------------------------------------------------------

def test_s3_put_object_greedy_key_metadata_and_typed_headers() -> None:
    params = {"Bucket": "bkt", "Key": "dir/sub dir/ü+x.txt", "Body": b"hello", "ContentLength": 5,
              "ContentType": "text/plain", "Metadata": {"color": "blue", "owner": "me"}, "Expires": T1,
              "ObjectLockRetainUntilDate": T2, "BucketKeyEnabled": True, "Tagging": "a=b"}
    # botocore writes header timestamps to the second, whatever their format
    assert round_trip_request("s3", "PutObject", params) == {**params, "ObjectLockRetainUntilDate": T2.replace(
        microsecond=0)}
    result = {"ETag": '"abc"', "VersionId": "v1", "BucketKeyEnabled": True, "Size": 5}
    assert round_trip_response("s3", "PutObject", result) == result


def test_s3_get_object_streams_payload_and_headers() -> None:
    async def chunks() -> Any:
        yield b"a"

    op = model.service_model("s3").operation_model("GetObject")
    stream = chunks()
    status, headers, body = protocol.serialize_response(op, {"Body": stream, "ContentLength": 1, "LastModified": T1,
                                                             "Metadata": {"k": "v"}, "ContentType": "text/x"})
    assert body is stream and status == 200
    assert headers["Content-Length"] == "1" and headers["x-amz-meta-k"] == "v" and headers["Content-Type"] == "text/x"
    assert headers["Last-Modified"] == "Tue, 02 Jan 2024 03:04:05 GMT"
    assert round_trip_response("s3", "GetObject", {"Body": b"xyz", "ETag": '"e"', "LastModified": T1}) == {
        "Body": "xyz", "ETag": '"e"', "LastModified": T1, "ContentType": "application/octet-stream", "Metadata": {}}
    ranged = round_trip_request("s3", "GetObject", {"Bucket": "b", "Key": "k", "Range": "bytes=0-1",
                                                    "PartNumber": 2, "IfModifiedSince": T1})
    assert ranged == {"Bucket": "b", "Key": "k", "Range": "bytes=0-1", "PartNumber": 2, "IfModifiedSince": T1}


def test_s3_list_objects_v2_result() -> None:
    assert round_trip_request("s3", "ListObjectsV2", {"Bucket": "b", "Prefix": "p/", "MaxKeys": 5,
                                                      "FetchOwner": True}) == {
        "Bucket": "b", "Prefix": "p/", "MaxKeys": 5, "FetchOwner": True}
    result = {"IsTruncated": True, "Name": "b", "Prefix": "p/", "KeyCount": 2, "MaxKeys": 5,
              "NextContinuationToken": "tok",
              "Contents": [{"Key": "p/a", "Size": 3, "LastModified": T2, "ETag": '"1"', "StorageClass": "STANDARD",
                            "ChecksumAlgorithm": ["CRC32"]},
                           {"Key": "p/<&>", "Size": 0, "LastModified": T1, "Owner": {"ID": "o"}}],
              "CommonPrefixes": [{"Prefix": "p/d/"}]}
    assert round_trip_response("s3", "ListObjectsV2", result) == result
    op = model.service_model("s3").operation_model("ListObjectsV2")
    body = protocol.serialize_response(op, result)[2]
    assert b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' in body


def test_s3_create_bucket_payload_xml_and_delete_objects() -> None:
    params = {"Bucket": "b", "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"}, "ACL": "private"}
    assert round_trip_request("s3", "CreateBucket", params) == params
    assert round_trip_request("s3", "CreateBucket", {"Bucket": "b"}) == {"Bucket": "b"}
    delete = {"Bucket": "b", "Delete": {"Objects": [{"Key": "a"}, {"Key": "b/c", "VersionId": "1"}], "Quiet": True}}
    assert round_trip_request("s3", "DeleteObjects", delete) == delete
    result = {"Deleted": [{"Key": "a"}, {"Key": "b/c", "DeleteMarker": True}],
              "Errors": [{"Key": "z", "Code": "AccessDenied", "Message": "no"}]}
    assert round_trip_response("s3", "DeleteObjects", result) == result


def test_s3_malformed_xml_and_doctype_refused() -> None:
    op = model.service_model("s3").operation_model("CreateBucket")
    with pytest.raises(faults.MalformedXML):
        protocol.parse_request(op, "PUT", "/b", {}, {}, b"<CreateBucketConfiguration>")
    bomb = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
            b"<CreateBucketConfiguration><LocationConstraint>&b;</LocationConstraint></CreateBucketConfiguration>")
    with pytest.raises(faults.MalformedXML):
        protocol.parse_request(op, "PUT", "/b", {}, {}, bomb)
    with pytest.raises(faults.Malformed):
        xmlbody.parse(b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><x/>')
    put = model.service_model("s3").operation_model("PutObject")
    with pytest.raises(faults.InvalidArgument):
        protocol.parse_request(put, "PUT", "/b/k", {}, {"Content-Length": "five"}, b"")


def test_s3_error_body_carries_resource_fields() -> None:
    err = faults.aws_error("NoSuchKey", 404, "The specified key does not exist.", Key="a/b", BucketName="bkt")
    sm = model.service_model("s3")
    status, headers, body = protocol.serialize_error(sm, err, "RID")
    assert headers["x-amz-request-id"] == "RID" and headers["x-amz-id-2"]
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>')
    assert b"<Key>a/b</Key><BucketName>bkt</BucketName><RequestId>RID</RequestId>" in body
    parsed = parsed_error("s3", err)
    assert parsed["Error"]["Code"] == "NoSuchKey" and parsed["Error"]["Key"] == "a/b"
    assert parsed["ResponseMetadata"]["RequestId"] == "req-9"


# -- query: STS, CloudFormation -----------------------------------------------------------------------------------

def test_sts_get_caller_identity() -> None:
    assert round_trip_request("sts", "GetCallerIdentity", {}) == {}
    result = {"Account": "123456789012", "Arn": "arn:aws:iam::123456789012:root", "UserId": "123456789012"}
    assert round_trip_response("sts", "GetCallerIdentity", result) == result
    op = model.service_model("sts").operation_model("GetCallerIdentity")
    body = protocol.serialize_response(op, result, "rid-7")[2]
    assert body.startswith(b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                           b"<GetCallerIdentityResult>")
    assert b"<ResponseMetadata><RequestId>rid-7</RequestId></ResponseMetadata>" in body


def test_cloudformation_create_stack_members_and_describe_stacks() -> None:
    params = {"StackName": "s", "TemplateBody": "{}", "TimeoutInMinutes": 5, "DisableRollback": False,
              "Parameters": [{"ParameterKey": "A", "ParameterValue": "1"}, {"ParameterKey": "B",
                                                                             "UsePreviousValue": True}],
              "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"], "NotificationARNs": [],
              "Tags": [{"Key": "k", "Value": "v"}]}
    method, path, query, headers, body = wire("cloudformation", "CreateStack", params)
    assert b"Parameters.member.2.UsePreviousValue=true" in body
    assert round_trip_request("cloudformation", "CreateStack", params) == params
    result = {"Stacks": [{"StackId": "id1", "StackName": "s", "CreationTime": T1, "LastUpdatedTime": T2,
                          "StackStatus": "CREATE_COMPLETE", "Parameters": [{"ParameterKey": "A",
                                                                            "ParameterValue": "1"}],
                          "Outputs": [{"OutputKey": "o", "OutputValue": "v", "ExportName": "e"}],
                          "Capabilities": ["CAPABILITY_IAM"], "DisableRollback": True, "TimeoutInMinutes": 5,
                          "Tags": []}], "NextToken": "n"}
    assert round_trip_response("cloudformation", "DescribeStacks", result) == result
    op = model.service_model("cloudformation").operation_model("CreateStack")
    with pytest.raises(faults.ValidationError):
        protocol.parse_request(op, "POST", "/", {}, {}, b"StackName=s&TimeoutInMinutes=five")


def test_query_error_shape() -> None:
    sm = model.service_model("cloudformation")
    status, headers, body = protocol.serialize_error(sm, faults.ValidationError("Stack with id s does not exist"),
                                                     "r1")
    assert status == 400
    assert body == (b'<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error>'
                    b"<Type>Sender</Type><Code>ValidationError</Code><Message>Stack with id s does not exist"
                    b"</Message></Error><RequestId>r1</RequestId></ErrorResponse>")
    parsed = parsed_error("cloudformation", faults.ValidationError("x"))
    assert parsed["Error"] == {"Type": "Sender", "Code": "ValidationError", "Message": "x"}
    assert parsed_error("sts", faults.InternalFailure("boom"))["Error"]["Type"] == "Receiver"


# -- the corners no single service exercises, on a small model of our own ------------------------------------------

SYNTH = {
    "metadata": {"protocol": "rest-json", "apiVersion": "2024-01-01", "serviceId": "Synth", "endpointPrefix": "synth",
                 "signatureVersion": "v4"},
    "operations": {"Do": {"name": "Do", "http": {"method": "PUT", "requestUri": "/things/{Id}/{Path+}"},
                          "input": {"shape": "DoInput"}, "output": {"shape": "DoOutput"}}},
    "shapes": {
        "DoInput": {"type": "structure", "required": ["Id", "Path"], "members": {
            "Id": {"shape": "Int", "location": "uri", "locationName": "Id"},
            "Path": {"shape": "Str", "location": "uri", "locationName": "Path"},
            "Since": {"shape": "Time", "location": "querystring", "locationName": "since"},
            "Tags": {"shape": "StrList", "location": "querystring", "locationName": "tag"},
            "Flag": {"shape": "Bool", "location": "querystring", "locationName": "flag"},
            "Ratio": {"shape": "Dbl", "location": "header", "locationName": "x-ratio"},
            "Names": {"shape": "StrList", "location": "header", "locationName": "x-names"},
            "Doc": {"shape": "JsonStr", "location": "header", "locationName": "x-doc"},
            "When": {"shape": "Time", "location": "header", "locationName": "x-when"},
            "Epoch": {"shape": "EpochTime", "location": "header", "locationName": "x-epoch"},
            "Meta": {"shape": "StrMap", "location": "headers", "locationName": "x-meta-"},
            "Body": {"shape": "Nested"}}},
        "DoOutput": {"type": "structure", "members": {
            "Code": {"shape": "Int", "location": "statusCode"},
            "Doc": {"shape": "JsonStr", "location": "header", "locationName": "x-doc"},
            "Names": {"shape": "StrList", "location": "header", "locationName": "x-names"},
            "When": {"shape": "Time", "location": "header", "locationName": "x-when"},
            "Body": {"shape": "Nested", "locationName": "body"}}},
        "Nested": {"type": "structure", "members": {"Blob": {"shape": "Blob"}, "Iso": {"shape": "IsoTime"},
                                                    "F": {"shape": "Dbl"}, "L": {"shape": "Long"},
                                                    "Renamed": {"shape": "Str", "locationName": "renamed"}}},
        "Int": {"type": "integer"}, "Long": {"type": "long"}, "Str": {"type": "string"}, "Bool": {"type": "boolean"},
        "Dbl": {"type": "double"}, "Blob": {"type": "blob"}, "Time": {"type": "timestamp"},
        "IsoTime": {"type": "timestamp", "timestampFormat": "iso8601"},
        "EpochTime": {"type": "timestamp", "timestampFormat": "unixTimestamp"},
        "JsonStr": {"type": "string", "jsonvalue": True},
        "StrList": {"type": "list", "member": {"shape": "Str"}},
        "StrMap": {"type": "map", "key": {"shape": "Str"}, "value": {"shape": "Str"}},
    },
}


def test_synthetic_rest_json_corners() -> None:
    import botocore.model

    sm = botocore.model.ServiceModel(SYNTH, "synth")
    op = sm.operation_model("Do")
    params = {"Id": 42, "Path": "a/b c/%d", "Since": T2, "Tags": ["x", "y z"], "Flag": False, "Ratio": 0.25,
              "Names": ["plain", "with,comma", 'with"quote'], "Doc": {"k": [1, {"n": None}]}, "When": T1,
              "Epoch": T1, "Meta": {"a": "1"},
              "Body": {"Blob": b"\x00\x01", "Iso": T2, "F": float("inf"), "L": 2**40, "Renamed": "r"}}
    request = botocore.serialize.create_serializer("rest-json").serialize_to_request(params, op)
    botocore.awsrequest.prepare_request_dict(request, "https://kambda.test")
    prepared = botocore.awsrequest.create_request_object(request).prepare()
    url = urlsplit(prepared.url)
    query = parse_qs(url.query, keep_blank_values=True)
    headers = CIMultiDict(prepared.headers.items())
    found = model.OperationIndex(sm).match("PUT", url.path, query, headers)
    assert found is not None and found[0].name == "Do" and found[1]["Id"] == "42"
    assert protocol.parse_request(op, "PUT", url.path, query, headers, prepared.body) == params
    # botocore's parser splits a header list at every comma, quoted or not: no commas in the answer's items
    result = {"Code": 202, "Doc": {"ok": True}, "Names": ["a", "b c"], "When": T1,
              "Body": {"Blob": b"\xff", "Iso": T2, "F": float("-inf"), "L": 7, "Renamed": "r"}}
    status, out_headers, body = protocol.serialize_response(op, result)
    parsed = botocore.parsers.create_parser("rest-json").parse(
        {"status_code": status, "headers": botocore.awsrequest.HeadersDict(out_headers), "body": body},
        op.output_shape)
    parsed.pop("ResponseMetadata")
    assert parsed == result


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                   max_size=3), max_leaves=12)
FIELDS = ["Entries", "Time", "Detail", "Code", "ZipFile", "Timeout", "Item", "B", "NS", "M", "Environment",
          "Variables", "Publish", "LocationConstraint"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([("events", "PutEvents"), ("lambda", "CreateFunction"), ("dynamodb", "PutItem"),
                        ("stepfunctions", "StartExecution"), ("s3", "CreateBucket"), ("s3", "DeleteObjects"),
                        ("cloudformation", "CreateStack")]),
       st.one_of(st.binary(max_size=64),
                 st.dictionaries(st.sampled_from(FIELDS), JSONISH, max_size=4).map(
                     lambda d: json.dumps(d, allow_nan=True).encode()),
                 st.lists(st.tuples(st.sampled_from(["StackName", "Parameters.member.1.ParameterKey",
                                                     "TimeoutInMinutes", "Tags.member.x", "Capabilities.member.1"]),
                                    st.text(max_size=6)), max_size=4).map(
                     lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode()),
                 st.sampled_from([b"<Delete><Object><Key>a</Key></Object><Quiet>maybe</Quiet></Delete>",
                                  b"<CreateBucketConfiguration><LocationConstraint>",
                                  b"<?xml version='1.0'?><!DOCTYPE a [<!ENTITY e SYSTEM 'file:///etc/hosts'>]><a>&e;</a>"])))
def test_malformed_input_is_a_client_error_never_a_crash(op: tuple[str, str], body: bytes) -> None:
    service, name = op
    operation = model.service_model(service).operation_model(name)
    path = {"lambda": "/2015-03-31/functions", "s3": "/b"}.get(service, "/")
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if service == "cloudformation" else {}
    try:
        protocol.parse_request(operation, "POST", path, {"delete": [""]} if name == "DeleteObjects" else {},
                               headers, body)
    except errors.KambdaError as err:
        assert 400 <= err.status < 500
