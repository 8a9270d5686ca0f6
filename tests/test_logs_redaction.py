"""Log redaction: tokens, passwords and codes never reach a log line, in fields, messages or tracebacks."""

import json
import logging

from jingtan_api.logs import REDACTED, JsonFormatter, RedactingFormatter, redact

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJlLXZhbHVl"
API_TOKEN = "jt_Zk3pQ9xLmN2vB7rT5yW8"


def _record(msg: str, *args, exc_info=None, **extra) -> logging.LogRecord:
    record = logging.LogRecord("jingtan.test", logging.WARNING, __file__, 1, msg, args, exc_info)
    record.__dict__.update(extra)
    return record


def test_fields_named_like_secrets_are_replaced_whole():
    line = json.loads(JsonFormatter().format(_record(
        "login", password="Hunter2-secret", refresh_token="r-abc", api_key="k-1", redemption_code="JT-7QX4-9PLM",
        verification_code="482913", Authorization="Bearer xyz", error_code="TRY_AGAIN", plugin_code="transit",
        details={"secret": "s3", "nested": [{"token": "t0k"}], "amount": 5},
    )))
    for key in ("password", "refresh_token", "api_key", "redemption_code", "verification_code", "Authorization"):
        assert line[key] == REDACTED, key
    assert line["details"] == {"secret": REDACTED, "nested": [{"token": REDACTED}], "amount": 5}
    assert line["error_code"] == "TRY_AGAIN" and line["plugin_code"] == "transit"  # not secrets


def test_secrets_inside_text_are_masked():
    text = (f"Authorization: Bearer {JWT}; token {API_TOKEN}; db postgresql+asyncpg://jingtan:pa55word@db/jt; "
            f"password=Hunter2-secret&code=JT-7QX4; json {{\"token\": \"abc123\"}}; raw jwt {JWT}")
    line = json.loads(JsonFormatter().format(_record("%s", text)))["msg"]
    for secret in (JWT, API_TOKEN, "pa55word", "Hunter2-secret", "JT-7QX4", "abc123"):
        assert secret not in line, (secret, line)
    assert "postgresql+asyncpg://jingtan:" in line and "@db/jt" in line  # the rest stays readable


def test_tracebacks_and_plain_format_are_redacted():
    try:
        raise ValueError(f"bad credential Bearer {API_TOKEN}")
    except ValueError:
        import sys

        record = _record("failed", exc_info=sys.exc_info())
    assert API_TOKEN not in JsonFormatter().format(record)
    assert API_TOKEN not in RedactingFormatter("%(message)s").format(_record("token=%s", API_TOKEN))


def test_redact_leaves_ordinary_values():
    assert redact({"user_id": 7, "path": "/graphql", "status": 200}) == {"user_id": 7, "path": "/graphql", "status": 200}


async def test_server_logs_carry_no_credentials(gql, member, caplog):
    """A real request with a bearer token and a login with a password: nothing of either in any line."""
    with caplog.at_level(logging.DEBUG, logger="jingtan"):
        await gql("{ viewer { id } }", token=member["token"])
        await gql("mutation($i: LoginInput!) { login(input: $i) { userErrors { code } } }",
                  {"i": {"identifier": member["email"], "password": member["password"]}})
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records]
    assert lines
    assert not any(member["token"] in line or member["password"] in line for line in lines)
