"""schemathesis (property-based requests generated from the GraphQL schema) against the app over HTTP,
on SQLite and PostgreSQL, as an anonymous client, a member, a merchant's staff and an admin.

Every query and mutation field of schema/schema.graphql gets ``EXAMPLES`` generated valid documents
(arbitrary arguments) and ``EXAMPLES // 3`` invalid ones (schemathesis' negative mode: wrong types,
missing arguments); JINGTAN_SCHEMATHESIS_EXAMPLES raises the number for a deeper local run. Each is sent
with one of the four roles. Verdict per response: no 5xx, a JSON body, no GraphQL error with code
INTERNAL_SERVER_ERROR, no leaked exception text ("Traceback", 'File "', a Python exception class name).
Afterwards the ledger and redemption invariants hold. The generation is derandomized, so a run is
repeatable and a failure names the document that caused it.

Run alone: ``.venv/bin/python -m pytest -q -s tests/test_schemathesis.py`` (-s prints the summary).
"""

import asyncio
import builtins
import json
import os
import re
from pathlib import Path

import graphql
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from jingtan_api.accounts import service as ledger
from jingtan_api.graphql.relay import from_global_id
from jingtan_api.redemptions import service as redemptions_service
from jingtan_api.testing import register_member
from offers_helpers import grant, make_merchant, make_offer

SDL = Path(__file__).resolve().parent.parent / "schema" / "schema.graphql"
EXAMPLES = int(os.environ.get("JINGTAN_SCHEMATHESIS_EXAMPLES", "15"))
NEGATIVE_EXAMPLES = max(1, EXAMPLES // 3)
ROLES = ("anonymous", "member", "merchant", "admin")

SCHEMA = schemathesis.graphql.from_path(SDL)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
SCHEMA_TYPES = set(graphql.build_schema(SDL.read_text(encoding="utf-8")).type_map)

# a Python exception class name in an answer means an exception's text leaked (schema types such as
# OfferError are GraphQL names, not leaks)
EXCEPTION_NAME = re.compile(r"\b[A-Z][A-Za-z0-9]*(?:Error|Exception|Warning)\b")
PYTHON_EXCEPTIONS = {name for name, obj in vars(builtins).items() if isinstance(obj, type) and issubclass(obj, BaseException)}


def verdict(response: httpx.Response) -> str | None:
    """None when the answer is acceptable, else what is wrong with it."""
    if response.status_code >= 500:
        return f"HTTP {response.status_code}"
    text = response.text
    if "Traceback" in text or 'File "' in text:
        return "a stack trace in the answer"
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code} with a body that is not JSON"
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    for error in body.get("errors") or []:
        if (error.get("extensions") or {}).get("code") == "INTERNAL_SERVER_ERROR":
            return "INTERNAL_SERVER_ERROR"
    leaked = {name for name in EXCEPTION_NAME.findall(text) if name not in SCHEMA_TYPES}
    if leaked & PYTHON_EXCEPTIONS or any(not name.endswith("Warning") for name in leaked):
        return f"exception class names in the answer: {sorted(leaked)}"
    return None


@pytest.fixture
async def tokens(gql, services, clock, admin) -> dict[str, str | None]:
    member = await register_member(gql, email="fuzz-member@example.cn")
    await grant(services, clock, int(from_global_id(member["id"])[1]), 500)
    merchant = await make_merchant(gql, services, clock, admin)
    await make_offer(gql, clock, merchant)
    return {"anonymous": None, "member": member["token"], "merchant": merchant["token"], "admin": admin["token"]}


def fuzz_operation(operation, mode, post, failures: list[dict], counter: dict[str, int]) -> None:
    @settings(
        max_examples=EXAMPLES if mode is GenerationMode.POSITIVE else NEGATIVE_EXAMPLES, deadline=None, database=None, derandomize=True,
        phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode), role=st.sampled_from(ROLES))
    def check(case, role):
        response = post(case.body, role)
        counter[mode.value] += 1
        if response.status_code == 200 and (response.json() or {}).get("data"):
            counter["executed"] += 1
        problem = verdict(response)
        if problem is not None:
            failures.append({
                "operation": operation.label, "mode": mode.value, "role": role, "problem": problem,
                "query": case.body, "answer": response.text[:600],
            })

    check()


async def test_schemathesis_finds_no_server_error(gql, services, tokens, db_url):
    loop = asyncio.get_running_loop()

    def post(query: str, role: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {tokens[role]}"} if tokens[role] else {}
        coro = gql.http.post("/graphql", json={"query": query}, headers=headers)
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=120)

    failures: list[dict] = []
    counter = {"positive": 0, "negative": 0, "executed": 0}
    for operation in OPERATIONS:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            await asyncio.to_thread(fuzz_operation, operation, mode, post, failures, counter)

    print(f"\nschemathesis: {len(OPERATIONS)} operations, {counter['positive']} valid documents "
          f"({counter['executed']} answered with data), {counter['negative']} invalid ones, {len(failures)} failures")
    assert len(OPERATIONS) >= 30  # every Query and Mutation field of the SDL
    assert counter["positive"] >= len(OPERATIONS) * 2 and counter["negative"] >= len(OPERATIONS)
    assert counter["executed"] >= len(OPERATIONS)  # the documents reached the resolvers, not only validation
    assert failures == [], json.dumps(failures[:5], ensure_ascii=False, indent=1)

    async with services.db.read() as conn:
        assert await ledger.check_invariants(conn) == []
        assert await redemptions_service.check_invariants(conn) == []


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, {"data": {"viewer": None}}, None),
        (200, {"data": None, "errors": [{"message": "Cannot query field 'x' on type 'OfferError'.",
                                          "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}]}, None),
        (500, {"errors": [{"message": "boom"}]}, "HTTP 500"),
        (200, {"data": None, "errors": [{"message": "Internal error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]},
         "INTERNAL_SERVER_ERROR"),
        (200, {"errors": [{"message": "KeyError: 'pk'"}]}, "exception class names in the answer: ['KeyError']"),
        (200, {"errors": [{"message": "IntegrityError duplicate key"}]}, "exception class names in the answer: ['IntegrityError']"),
        (200, {"errors": [{"message": 'Traceback (most recent call last):\n  File "x.py"'}]}, "a stack trace in the answer"),
    ],
)
def test_the_verdict_catches_what_it_looks_for(status, body, expected):
    assert verdict(httpx.Response(status, json=body)) == expected


def test_the_verdict_rejects_a_body_that_is_not_json():
    assert verdict(httpx.Response(400, text="<html>bad request</html>")) == "HTTP 400 with a body that is not JSON"
