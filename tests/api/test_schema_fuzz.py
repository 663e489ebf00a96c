"""Property-based fuzzing of our OpenAPI document with schemathesis: whatever the generated
request, the API answers without a server error (5xx), and the server keeps serving.

Covers every /sdapi/v1, /api/v1 and /health operation the live server documents. The number of
cases run is printed (``pytest -s``) and is about EXAMPLES per operation.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

pytestmark = pytest.mark.slow

EXAMPLES = 12
OUR_PREFIXES = ("/sdapi/v1", "/api/v1", "/health")
# Operations whose generated calls would change what the other cases run against.
LEFT_OUT = {("POST", "/sdapi/v1/options")}


def _operations(server_url: str) -> list:
    schema = schemathesis.openapi.from_url(server_url + "openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    return [op for op in operations if op.path.startswith(OUR_PREFIXES)
            and (op.method.upper(), op.path) not in LEFT_OUT]


def test_docs_are_served_and_no_generated_request_gets_a_5xx(server_url: str) -> None:
    assert httpx.get(server_url + "docs", timeout=30).status_code == 200
    operations = _operations(server_url)
    assert len(operations) > 30, [op.path for op in operations]
    failures, cases = [], 0
    for operation in operations:

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case) -> None:  # noqa: ANN001 - a schemathesis Case
            nonlocal cases
            cases += 1
            response = case.call(base_url=server_url.rstrip("/"), timeout=120)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                f"{response.text[:200]}")

        check()
    print(f"schemathesis: {cases} generated requests over {len(operations)} operations")
    assert not failures, failures[:10]
    assert httpx.get(server_url + "health", timeout=10).json()["status"] == "ok"
