"""Persisted operations over HTTP: Apollo's automatic persisted queries, the manifest written by
`jingtan operations register` (run as a real process), and the allow-list mode."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from jingtan_api.app import GRAPHQL_RESPONSE_JSON, create_app
from jingtan_api.settings import ConfigurationError
from jingtan_api.testing import make_settings, row_counts

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ROOT / "schema" / "operations"
VIEWER = "{ viewer { id } }"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def apq(digest: str, version: int = 1) -> dict:
    return {"persistedQuery": {"version": version, "sha256Hash": digest}}


def register_input(email: str) -> dict:
    return {"input": {"email": email, "password": "Green-leaf-2026", "displayName": "登记 Registered"}}


def jingtan(*args: str, cwd: Path = ROOT, **settings: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JINGTAN_")}
    env["JINGTAN_DATABASE_URL"] = "sqlite+aiosqlite:///:memory:"
    env |= {f"JINGTAN_{key.upper()}": value for key, value in settings.items()}
    return subprocess.run(
        [sys.executable, "-m", "jingtan_api.cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=120,
    )


@pytest.fixture(scope="session")
def manifest(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("persisted") / "operations.json"
    done = jingtan("operations", "register", "--output", str(path))
    assert done.returncode == 0, done.stderr
    assert "registered" in done.stdout
    return path


@pytest.fixture
async def http(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client


# --- automatic persisted queries -----------------------------------------------------------------------


async def test_apq_round_trip_post_and_get(http):
    query = "query ApqProbe { viewer { id displayName } }"
    digest = sha(query)
    miss = await http.post("/graphql", json={"extensions": apq(digest)})
    assert miss.status_code == 200  # application/json: as Apollo's clients expect
    assert miss.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert miss.json()["errors"][0]["message"].startswith("PersistedQueryNotFound")
    strict = await http.post("/graphql", json={"extensions": apq(digest)}, headers={"Accept": GRAPHQL_RESPONSE_JSON})
    assert strict.status_code == 400 and "data" not in strict.json()
    assert strict.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"

    registered = await http.post("/graphql", json={"query": query, "extensions": apq(digest)})
    assert registered.status_code == 200 and registered.json()["data"] == {"viewer": None}
    by_hash = await http.post("/graphql", json={"extensions": apq(digest), "operationName": "ApqProbe"})
    assert by_hash.json() == registered.json()
    # Apollo's useGETForHashedQueries: the hash in the query string
    by_get = await http.get("/graphql", params={"extensions": json.dumps(apq(digest))})
    assert by_get.status_code == 200 and by_get.json()["data"] == {"viewer": None}
    by_id = await http.post("/graphql", json={"documentId": f"sha256:{digest}"})
    assert by_id.json()["data"] == {"viewer": None}


async def test_a_mismatching_hash_is_refused_and_nothing_is_written(http, services):
    before = await row_counts(services.db)
    query = "mutation($input: RegisterInput!) { register(input: $input) { user { id } userErrors { code } } }"
    wrong = sha(query + " ")
    response = await http.post(
        "/graphql", json={"query": query, "variables": register_input("mismatch@example.cn"), "extensions": apq(wrong)}
    )
    assert response.status_code == 200
    assert response.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_HASH_MISMATCH"
    assert await row_counts(services.db) == before
    # and the wrong hash was not remembered
    again = await http.post("/graphql", json={"extensions": apq(wrong)})
    assert again.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


@pytest.mark.parametrize(
    "body",
    [
        {"query": VIEWER, "extensions": apq(sha(VIEWER), version=2)},
        {"query": VIEWER, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "abc"}}},
        {"query": VIEWER, "extensions": {"persistedQuery": "yes"}},
        {"query": VIEWER, "extensions": apq(sha(VIEWER).upper())},
        {"documentId": sha(VIEWER)},  # the prefix is required
        {"documentId": 42},
        {"documentId": f"sha256:{sha(VIEWER)}", "extensions": apq(sha(VIEWER + "x"))},
    ],
)
async def test_malformed_persisted_query_parameters(http, services, body):
    before = await row_counts(services.db)
    response = await http.post("/graphql", json=body)
    assert response.status_code == 200
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "PERSISTED_QUERY_INVALID" and " / " in error["message"]
    strict = await http.post("/graphql", json=body, headers={"Accept": GRAPHQL_RESPONSE_JSON})
    assert strict.status_code == 400
    assert await row_counts(services.db) == before


@pytest.mark.parametrize("settings_overrides", [{"graphql": {"apq_cache_size": 2}}])
async def test_the_apq_cache_is_bounded(http):
    queries = [f"{{ q{i}: viewer {{ id }} }}" for i in range(3)]
    for query in queries:
        assert (await http.post("/graphql", json={"query": query, "extensions": apq(sha(query))})).status_code == 200
    codes = []
    for query in queries:
        body = (await http.post("/graphql", json={"extensions": apq(sha(query))})).json()
        codes.append(body["errors"][0]["extensions"]["code"] if "errors" in body else "OK")
    assert codes == ["PERSISTED_QUERY_NOT_FOUND", "OK", "OK"]


@pytest.mark.parametrize("settings_overrides", [{"graphql": {"automatic_persisted_queries": False}}])
async def test_apq_off_never_remembers(http):
    query = "{ off: viewer { id } }"
    ran = await http.post("/graphql", json={"query": query, "extensions": apq(sha(query))})
    assert ran.json()["data"] == {"off": None}  # the hash is still checked, the query runs
    miss = await http.post("/graphql", json={"extensions": apq(sha(query))})
    assert miss.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


# --- registered operations and the allow-list -----------------------------------------------------------


def test_the_manifest_holds_every_operation_with_its_hash(manifest):
    data = json.loads(manifest.read_text(encoding="utf-8"))
    files = sorted(OPERATIONS.rglob("*.graphql"))
    assert data["format"] == 1 and len(data["operations"]) == len(files)
    for path in files:
        text = path.read_text(encoding="utf-8")
        entry = data["operations"][sha(text)]
        assert entry["document"] == text and entry["path"] == path.relative_to(OPERATIONS).as_posix()
    assert data["operations"][sha((OPERATIONS / "account/Register.graphql").read_text())]["name"] == "Register"


def test_register_refuses_invalid_documents_and_keeps_old_entries(tmp_path):
    ops = tmp_path / "ops"
    ops.mkdir()
    (ops / "Viewer.graphql").write_text("query Viewer { viewer { id } }\n", encoding="utf-8")
    out = tmp_path / "manifest.json"
    first = jingtan("operations", "register", "--dir", str(ops), "--output", str(out))
    assert first.returncode == 0, first.stderr
    assert "1 new" in first.stdout

    (ops / "Broken.graphql").write_text("query Broken { viewer { nope } }\n", encoding="utf-8")
    before = out.read_text(encoding="utf-8")
    broken = jingtan("operations", "register", "--dir", str(ops), "--output", str(out))
    assert broken.returncode == 1
    assert "Broken.graphql" in broken.stderr and "nope" in broken.stderr and "nothing registered" in broken.stderr
    assert out.read_text(encoding="utf-8") == before

    (ops / "Broken.graphql").unlink()
    (ops / "Viewer.graphql").write_text("query Viewer { viewer { id displayName } }\n", encoding="utf-8")
    kept = jingtan("operations", "register", "--dir", str(ops), "--output", str(out))
    assert kept.returncode == 0 and "1 new, 0 removed" in kept.stdout
    assert len(json.loads(out.read_text())["operations"]) == 2  # the old version stays for old clients
    pruned = jingtan("operations", "register", "--dir", str(ops), "--output", str(out), "--prune")
    assert pruned.returncode == 0 and "0 new, 1 removed" in pruned.stdout
    assert len(json.loads(out.read_text())["operations"]) == 1


def test_register_writes_the_configured_manifest_even_with_the_allow_list_on(tmp_path):
    target = tmp_path / "deploy" / "operations.json"
    done = jingtan(
        "operations", "register",
        graphql__allow_list="true", graphql__persisted_operations_file=str(target),
    )
    assert done.returncode == 0, done.stderr
    assert str(target) in done.stdout
    assert len(json.loads(target.read_text(encoding="utf-8"))["operations"]) == len(list(OPERATIONS.rglob("*.graphql")))


def test_register_with_no_documents_fails(tmp_path):
    done = jingtan("operations", "register", "--dir", str(tmp_path), "--output", str(tmp_path / "m.json"))
    assert done.returncode == 1 and "no *.graphql files" in done.stderr
    assert not (tmp_path / "m.json").exists()


def test_allow_list_configuration_errors(tmp_path, manifest):
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(ConfigurationError, match="persisted_operations_file"):
        create_app(make_settings(url, graphql={"allow_list": True}))
    with pytest.raises(ConfigurationError, match="does not exist"):
        create_app(make_settings(url, graphql={"allow_list": True, "persisted_operations_file": str(tmp_path / "no.json")}))
    tampered = tmp_path / "tampered.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))
    first = next(iter(data["operations"].values()))
    first["document"] = first["document"].replace("{", "{ __typename ", 1)
    tampered.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigurationError, match="does not match its hash"):
        create_app(make_settings(url, graphql={"persisted_operations_file": str(tampered)}))


class TestAllowList:
    @pytest.fixture
    def settings_overrides(self, manifest):
        return {"graphql": {"allow_list": True, "persisted_operations_file": str(manifest)}}

    async def test_registered_operations_run_by_hash_or_id(self, http, services, operation):
        register = operation("account/Register")
        before = await row_counts(services.db)
        by_id = await http.post(
            "/graphql", json={"documentId": f"sha256:{sha(register)}", "variables": register_input("a@example.cn")}
        )
        assert by_id.json()["data"]["register"]["userErrors"] == [], by_id.text
        by_hash = await http.post(
            "/graphql", json={"extensions": apq(sha(register)), "variables": register_input("b@example.cn")}
        )
        assert by_hash.json()["data"]["register"]["user"]["id"]
        after = await row_counts(services.db)
        assert after["user_account"] == before["user_account"] + 2
        token = by_hash.json()["data"]["register"]["tokens"]["accessToken"]
        mine = await http.get(
            "/graphql",
            params={"documentId": f"sha256:{sha(operation('account/MyAccount'))}"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert mine.status_code == 200 and mine.json()["data"]["viewer"]["displayName"] == "登记 Registered"

    @pytest.mark.parametrize("which", ["arbitrary", "registered text", "text with its hash", "unknown hash"])
    async def test_everything_else_is_refused_and_nothing_is_written(self, http, services, operation, which):
        register = operation("account/Register")
        variables = register_input("refused@example.cn")
        body = {
            "arbitrary": {"query": "mutation($input: RegisterInput!) { register(input: $input) { user { id } } }"},
            "registered text": {"query": register},
            "text with its hash": {"query": register, "extensions": apq(sha(register))},
            "unknown hash": {"extensions": apq(sha(register + "\n"))},
        }[which] | {"variables": variables}
        before = await row_counts(services.db)
        response = await http.post("/graphql", json=body)
        assert response.status_code == 200
        code = response.json()["errors"][0]["extensions"]["code"]
        assert code == ("PERSISTED_QUERY_NOT_FOUND" if which == "unknown hash" else "OPERATION_NOT_ALLOWED")
        strict = await http.post("/graphql", json=body, headers={"Accept": GRAPHQL_RESPONSE_JSON})
        assert strict.status_code == 400 and "data" not in strict.json()
        assert await row_counts(services.db) == before

    async def test_get_with_a_document_is_refused(self, http):
        response = await http.get("/graphql", params={"query": VIEWER})
        assert response.json()["errors"][0]["extensions"]["code"] == "OPERATION_NOT_ALLOWED"
