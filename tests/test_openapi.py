"""docs/openapi.yaml against a running gateway (issue 9, part 5): schemathesis generates requests
from the description (valid and invalid ones), and every answer must be no 5xx and must conform to
the description: a documented status, content type, headers (x-amzn-ErrorType on errors) and body."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import REPO, Platform

SPEC = REPO / "docs" / "openapi.yaml"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


#: Examples over all operations together, per generation mode (about a minute on a busy machine).
EXAMPLES = 1000


def test_the_description_is_a_valid_openapi_document() -> None:
    loaded = schemathesis.openapi.from_path(SPEC)
    operations = [result.ok() for result in loaded.get_all_operations()]
    assert len(operations) >= 25


def test_the_gateway_answers_as_described(platform: Platform) -> None:
    loaded = schemathesis.openapi.from_path(SPEC)
    loaded.config.update(base_url=platform.url)
    operations = [result.ok() for result in loaded.get_all_operations()]
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        cases = st.one_of([op.as_strategy(generation_mode=mode) for op in operations])

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=cases)
        def answers_as_described(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS, timeout=60)

        answers_as_described()
