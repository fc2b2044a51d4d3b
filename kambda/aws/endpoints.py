"""Where a function's AWS SDK finds kambda: the service-specific endpoint variables every environment gets.

boto3, the AWS CLI and the AWS SDK for JavaScript v3 read ``AWS_ENDPOINT_URL_<SERVICE>`` (the service's id,
upper case, spaces as underscores: ``S3``, ``DYNAMODB``, ``SFN``) before the global ``AWS_ENDPOINT_URL``, so
``boto3.client("s3")`` in a handler talks to kambda with no code change, while a service kambda does not serve
(SES, say) still goes to AWS. Only the services kambda serves get a variable; a service joins
:data:`SERVED` when its API lands.

A function opts out with variables of its own: one of its own ``AWS_ENDPOINT_URL_<SERVICE>`` wins over
kambda's, and its own global ``AWS_ENDPOINT_URL`` means it chose one endpoint for everything, so kambda adds
none (a service-specific variable would otherwise override the function's choice).
"""

from __future__ import annotations

from collections.abc import Mapping

#: botocore service names kambda serves through the front door.
SERVED = ("lambda", "events", "sts", "iam", "dynamodb", "dynamodbstreams", "stepfunctions", "s3", "ecr", "ecs")

#: botocore's service ids (``ServiceModel.service_id``) of :data:`SERVED`, fixed here so that an
#: execution environment needs no botocore to be built.
_SERVICE_IDS = {
    "lambda": "Lambda", "events": "EventBridge", "sts": "STS", "stepfunctions": "SFN", "s3": "S3",
    "dynamodb": "DynamoDB", "dynamodbstreams": "DynamoDB Streams", "iam": "IAM", "ecr": "ECR", "ecs": "ECS",
}
GLOBAL = "AWS_ENDPOINT_URL"


def variable(service: str) -> str:
    """``AWS_ENDPOINT_URL_<SERVICE>`` as the SDKs spell it for a botocore service name."""
    return f"{GLOBAL}_{_SERVICE_IDS[service].replace(' ', '_').replace('-', '_').upper()}"


def for_function(endpoint: str, own: Mapping[str, str]) -> dict[str, str]:
    """The endpoint variables to give a function whose own environment is ``own`` (empty: no endpoint known,
    or the function set the global variable itself)."""
    if not endpoint or own.get(GLOBAL):
        return {}
    return {variable(service): endpoint for service in SERVED if variable(service) not in own}
