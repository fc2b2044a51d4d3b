"""Routing rules, one by one, and their precedence: credential scope, then target, then host, then path."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from kambda.aws.router import Route, Router, action_of, credential_scope

ALL = ("lambda", "events", "sts", "stepfunctions", "s3", "dynamodb", "dynamodbstreams", "ecs", "ecr",
       "cloudformation", "apigateway", "apigatewayv2", "sqs", "sns", "execute-api", "lambda-url")


@pytest.fixture(scope="module")
def router() -> Router:
    return Router(ALL, domain="kambda.example")


def auth(service: str, region: str = "eu-west-1") -> str:
    return (f"AWS4-HMAC-SHA256 Credential=AKID/20240102/{region}/{service}/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64)


def h(**headers: str) -> CIMultiDict[str]:
    return CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()})


@pytest.mark.parametrize(("signing", "service"), [
    ("lambda", "lambda"), ("events", "events"), ("sts", "sts"), ("states", "stepfunctions"), ("s3", "s3"),
    ("dynamodb", "dynamodb"), ("ecs", "ecs"), ("ecr", "ecr"), ("cloudformation", "cloudformation"),
    ("sqs", "sqs"), ("sns", "sns"), ("execute-api", "execute-api")])
def test_scope_signing_names(router: Router, signing: str, service: str) -> None:
    route = router.route("POST", "/", {}, h(Authorization=auth(signing)))
    assert route == Route(service, "scope", "eu-west-1")


def test_scope_from_presigned_query(router: Router) -> None:
    query = {"X-Amz-Credential": ["AKID/20240102/us-east-1/s3/aws4_request"], "X-Amz-Signature": ["ab"]}
    assert router.route("GET", "/b/k", query, h()) == Route("s3", "scope", "us-east-1")
    assert credential_scope({}, {"X-Amz-Credential": "A/20240102/r/lambda/aws4_request"}).service == "lambda"
    assert credential_scope({"Authorization": "Bearer x"}, {}) is None


def test_shared_signing_names_settled_by_target_and_path(router: Router) -> None:
    streams = router.route("POST", "/", {}, h(Authorization=auth("dynamodb"),
                                              X_Amz_Target="DynamoDBStreams_20120810.GetRecords"))
    assert streams is not None and streams.service == "dynamodbstreams"
    table = router.route("POST", "/", {}, h(Authorization=auth("dynamodb"), X_Amz_Target="DynamoDB_20120810.GetItem"))
    assert table is not None and table.service == "dynamodb"
    v2 = router.route("GET", "/v2/apis", {}, h(Authorization=auth("apigateway")))
    v1 = router.route("GET", "/restapis", {}, h(Authorization=auth("apigateway")))
    assert v2 is not None and v2.service == "apigatewayv2"
    assert v1 is not None and v1.service == "apigateway"


@pytest.mark.parametrize(("target", "service"), [
    ("AWSEvents.PutEvents", "events"), ("AWSStepFunctions.StartExecution", "stepfunctions"),
    ("DynamoDB_20120810.PutItem", "dynamodb"), ("DynamoDBStreams_20120810.ListStreams", "dynamodbstreams"),
    ("AmazonEC2ContainerServiceV20141113.ListClusters", "ecs"), ("AmazonSQS.SendMessage", "sqs"),
    ("AmazonEC2ContainerRegistry_V20150921.ListImages", "ecr")])
def test_target_prefix(router: Router, target: str, service: str) -> None:
    assert router.route("POST", "/", {}, h(X_Amz_Target=target)) == Route(service, "target")


def test_hosts(router: Router) -> None:
    assert router.route("GET", "/k", {}, h(Host="my.bucket.s3.kambda.example:8080")) == Route(
        "s3", "host", bucket="my.bucket")
    assert router.route("GET", "/b/k", {}, h(Host="s3.kambda.example")) == Route("s3", "host")
    assert router.route("GET", "/prod/x", {}, h(Host="a1b2c3.execute-api.kambda.example")) == Route(
        "execute-api", "host", api_id="a1b2c3")
    assert router.route("POST", "/", {}, h(Host="abcdef.lambda-url.kambda.example")) == Route(
        "lambda-url", "host", url_id="abcdef")
    assert router.route("GET", "/", {}, h(Host="s3.other.example")) is None


def test_paths(router: Router) -> None:
    assert router.route("GET", "/2015-03-31/functions/", {}, h()) == Route("lambda", "path")
    assert router.route("GET", "/2021-10-31/functions/f/url", {}, h()) == Route("lambda", "path")
    assert router.route("GET", "/v2/apis", {}, h()) == Route("apigatewayv2", "path")
    assert router.route("GET", "/restapis", {}, h()) == Route("apigateway", "path")


def test_query_actions_from_form_or_query_string(router: Router) -> None:
    body = b"Action=CreateStack&Version=2010-05-15&StackName=s"
    action, version = action_of({}, "application/x-www-form-urlencoded; charset=utf-8", body)
    assert (action, version) == ("CreateStack", "2010-05-15")
    assert router.route("POST", "/", {}, h(), action, version) == Route("cloudformation", "action")
    assert router.route("POST", "/", {}, h(), "GetCallerIdentity") == Route("sts", "action")
    assert router.route("GET", "/", {"Action": ["Publish"]}, h()) == Route("sns", "action")
    assert router.route("POST", "/", {}, h(), "NoSuchAction") is None


def test_precedence_scope_target_host_path(router: Router) -> None:
    # scope beats target
    route = router.route("POST", "/2015-03-31/functions", {}, h(Authorization=auth("lambda"),
                                                                X_Amz_Target="AWSEvents.PutEvents",
                                                                Host="b.s3.kambda.example"))
    assert route is not None and route.service == "lambda" and route.rule == "scope"
    # target beats host and path
    route = router.route("POST", "/2015-03-31/functions", {}, h(X_Amz_Target="AWSEvents.PutEvents",
                                                                Host="b.s3.kambda.example"))
    assert route == Route("events", "target")
    # host beats path
    route = router.route("GET", "/2015-03-31/functions", {}, h(Host="b.s3.kambda.example"))
    assert route == Route("s3", "host", bucket="b")
    # a signed S3 request on a virtual host keeps its bucket
    route = router.route("PUT", "/k", {}, h(Authorization=auth("s3"), Host="b.s3.kambda.example"))
    assert route == Route("s3", "scope", "eu-west-1", bucket="b")


def test_only_registered_services_and_fallback() -> None:
    small = Router(["lambda", "s3"], domain="localhost", fallback="s3")
    assert small.route("POST", "/", {}, h(X_Amz_Target="AWSEvents.PutEvents")) == Route("s3", "fallback")
    assert small.route("GET", "/bucket/key", {}, h()) == Route("s3", "fallback")
    assert small.route("POST", "/", {}, h(Authorization=auth("events"))) == Route("s3", "fallback", "eu-west-1")
    assert Router(["lambda"]).route("GET", "/bucket", {}, h()) is None
