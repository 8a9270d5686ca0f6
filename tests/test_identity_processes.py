"""Two real server processes on one database share a code's attempt counter: spreading guesses over
processes (and concurrent requests) gives no more tries than ``code_max_attempts`` in total. Run on
PostgreSQL and SQLite; the code is read from the development sender's outbox file."""

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import select

from jingtan_api.db import Database
from jingtan_api.identity.models import VerificationCode
from jingtan_api.testing import run_sync
from live_server import LiveServer

REGISTER = """mutation($i: RegisterInput!) { register(input: $i) { user { id } userErrors { code } } }"""
REQUEST_LOGIN = """mutation($i: RequestCodeInput!) { requestLoginCode(input: $i) { userErrors { code } } }"""
LOGIN_WITH_CODE = """mutation($i: LoginWithCodeInput!) { loginWithCode(input: $i) {
  tokens { accessToken } errors { code } } }"""
GUESSES = 12


def post(url: str, query: str, variables: dict) -> dict:
    response = httpx.post(url, json={"query": query, "variables": variables}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def attempts_in_db(db_url: str) -> int:
    db = Database(db_url)
    try:
        async with db.read() as conn:
            VC = VerificationCode.__table__
            return (await conn.execute(select(VC.c.attempts).where(VC.c.destination == "+8613800138901"))).scalar_one()
    finally:
        await db.dispose()


def test_two_server_processes_share_code_attempts(db_url, tmp_path):
    outbox = tmp_path / "outbox.jsonl"
    env = {"JINGTAN_IDENTITY__DEVELOPMENT_OUTBOX_FILE": str(outbox)}
    with LiveServer(db_url, tmp_path, env=env) as a, LiveServer(db_url, tmp_path, env=env) as b:
        data = post(a.url, REGISTER, {"i": {"phone": "13800138901", "password": "Green-leaf-2026",
                                              "displayName": "双进程 Two processes"}})
        assert data["register"]["userErrors"] == []
        assert post(b.url, REQUEST_LOGIN, {"i": {"identifier": "13800138901"}})["requestLoginCode"]["userErrors"] == []
        [message] = [json.loads(line) for line in outbox.read_text().splitlines()]
        code = message["code"]
        wrong = "000000" if code != "000000" else "111111"

        def guess(n: int) -> str:
            server = (a, b)[n % 2]
            answer = post(server.url, LOGIN_WITH_CODE, {"i": {"identifier": "13800138901", "code": wrong}})
            return answer["loginWithCode"]["errors"][0]["code"]

        with ThreadPoolExecutor(max_workers=6) as pool:
            codes = list(pool.map(guess, range(GUESSES)))
        assert sorted(codes) == sorted(["INVALID_CODE"] * 4 + ["TOO_MANY_ATTEMPTS"] * (GUESSES - 4)), codes
        # The right code is void now, on either server.
        for server in (a, b):
            answer = post(server.url, LOGIN_WITH_CODE, {"i": {"identifier": "13800138901", "code": code}})
            assert answer["loginWithCode"] == {"tokens": None, "errors": [{"code": "TOO_MANY_ATTEMPTS"}]}
    assert run_sync(attempts_in_db(db_url)) == 5
