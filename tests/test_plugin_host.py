"""The plugin host: startup failures (one clear line naming the plugin), discovery through entry points,
isolation of plugin failures at request time, per-app plugin sets, actionTypes."""

import importlib.metadata
from datetime import timedelta

import pytest

from jingtan_api.app import create_app
from jingtan_api.plugins import manager
from jingtan_api.plugins.api import PLUGIN_API_VERSION
from jingtan_api.settings import ConfigurationError
from jingtan_api.testing import GraphQLClient, make_settings, register_member
from tests import fake_plugins
from tests.actions_helpers import balance, count_actions, ledger_ok, submit

FAKES = {
    name: importlib.metadata.EntryPoint(name=name, value=f"tests.fake_plugins:{name}", group="jingtan.plugins")
    for name in ("ping", "boom", "calc_boom", "hang", "needs_key", "dup_transit", "same_input_name", "core_clash",
                 "future_api", "raising", "misspelled", "no_input", "methodology_boom", "caps_boom",
                 "settings_check_boom")
}
FAKES["broken"] = importlib.metadata.EntryPoint(name="broken", value="tests.fake_plugin_broken", group="jingtan.plugins")


@pytest.fixture
def fake_entry_points(monkeypatch):
    real = manager.discover_entry_points()
    monkeypatch.setattr(manager, "discover_entry_points", lambda group="jingtan.plugins": {**real, **FAKES})


def _settings(enabled, **plugin_tables):
    return make_settings("sqlite+aiosqlite:////tmp/jingtan-never-opened.db", plugins={"enabled": enabled, **plugin_tables})


@pytest.mark.parametrize(
    "enabled, tables, expected",
    [
        (["nope"], {}, "plugin 'nope' is enabled but not installed"),
        (["broken"], {}, "plugin 'broken' failed to import: ModuleNotFoundError"),
        (["needs_key"], {}, "plugin 'needs_key': invalid settings [plugins.needs_key]: api_key: Field required"),
        (["needs_key"], {"needs_key": {"api_key": "short"}}, "plugin 'needs_key': invalid settings [plugins.needs_key]: api_key"),
        (["ping"], {"ping": {"unknown": 1}}, "plugin 'ping': invalid settings [plugins.ping]: unknown: Extra inputs"),
        (["transit"], {"transit": {"factors": {"transit.car": {"value": 1}}}}, "plugin 'transit': invalid settings"),
        (["transit", "dup_transit"], {}, "plugin 'dup_transit': action type code 'transit' is already provided by plugin 'transit'"),
        (["ping", "same_input_name"], {}, "plugin 'same_input_name': GraphQL type name 'PingActionInput' is already used by plugin 'ping'"),
        (["core_clash"], {}, "plugin 'core_clash': GraphQL type name 'AccountKind' is already used by the core"),
        (["future_api"], {}, f"plugin 'future_api': needs plugin API 2.0, this server provides {PLUGIN_API_VERSION}"),
        (["raising"], {}, "plugin 'raising': jingtan_register_action_types failed: KeyError"),
        (["transit", "misspelled"], {}, "plugin 'misspelled': unknown hook 'jingtan_register_action_type' (no such "
                                        "hook specification; this server provides jingtan_register_action_types"),
        (["no_input"], {}, "plugin 'no_input': action type 'no_input' has no pydantic Input model"),
        (["methodology_boom"], {}, "plugin 'methodology_boom': methodology of 'methodology_boom' failed: KeyError"),
        (["caps_boom"], {}, "plugin 'caps_boom': caps of 'caps_boom' failed: AttributeError"),
        (["settings_check_boom"], {}, "plugin 'settings_check_boom': checking settings [plugins.settings_check_boom] "
                                      "failed: TypeError: unsupported operand"),
        (["transit"], {"trnsit": {"daily_cap_grams": 5}}, "[plugins.trnsit]: no enabled plugin provides an action type "
                                                          "'trnsit' (enabled action types: transit); did you mean [plugins.transit]?"),
        (["transit"], {"recycling": {"daily_cap_grams": -1}}, "plugin 'recycling': invalid settings [plugins.recycling]: "
                                                               "daily_cap_grams: Input should be greater than or equal to 0"),
        (["transit"], {"recycling": {"no_such_key": 1}}, "(plugin 'recycling' is disabled, but its [plugins.recycling] table is checked)"),
        ([], {"needs_key": {}}, "plugin 'needs_key': invalid settings [plugins.needs_key]: api_key: Field required"),
        (["transit"], {"broken": {}}, "[plugins.broken]: plugin 'broken' is disabled and failed to import"),
        ([], {"nowhere": {}}, "[plugins.nowhere]: no enabled plugin provides an action type 'nowhere' (enabled action types: none)"),
        (["transit", "ping", "transit"], {}, "[plugins] enabled lists 'transit' more than once"),
    ],
)
def test_startup_fails_with_one_line_naming_the_plugin(fake_entry_points, enabled, tables, expected):
    with pytest.raises(ConfigurationError) as info:
        create_app(_settings(enabled, **tables))
    message = str(info.value)
    assert expected in message, message
    assert "\n" not in message


def test_valid_tables_of_disabled_plugins_start_with_a_warning(fake_entry_points, caplog):
    with caplog.at_level("WARNING", logger="jingtan.plugins"):
        app = create_app(_settings(["transit"], recycling={"daily_cap_grams": 100}))
    assert "RecyclingActionInput" not in str(app.state.schema)  # still disabled
    assert any("[plugins.recycling] is valid but unused" in r.getMessage() for r in caplog.records)


def test_disabled_plugins_are_never_imported(fake_entry_points):
    import sys

    sys.modules.pop("tests.fake_plugin_broken", None)
    app = create_app(_settings(["ping"]))
    assert "tests.fake_plugin_broken" not in sys.modules
    assert "input PingActionInput" in str(app.state.schema)
    assert "TransitActionInput" not in str(app.state.schema)


def test_no_plugins_means_no_submit_action():
    app = create_app(_settings([]))
    sdl = str(app.state.schema)
    assert "submitAction" not in sdl and "actionTypes" in sdl


def test_apps_with_different_plugin_sets_side_by_side():
    a = create_app(_settings([]), plugins=[("ping", fake_plugins.ping)])
    b = create_app(_settings(["transit"]))
    assert "ping" in a.state.services.plugins.action_types
    assert "ping" not in b.state.services.plugins.action_types
    assert a.state.services.plugins.pm is not b.state.services.plugins.pm


def test_entry_points_of_builtins_are_installed():
    eps = manager.discover_entry_points()
    assert {"transit", "recycling", "energy_saving"} <= set(eps)


# --- request-time isolation --------------------------------------------------------------------------


@pytest.fixture
async def plugin_app(db_url, clock):
    settings = make_settings(db_url, plugins={"enabled": [], "timeout_seconds": 0.05})
    app = create_app(settings, clock=clock, plugins=[
        ("ping", fake_plugins.ping), ("boom", fake_plugins.boom), ("hang", fake_plugins.hang),
        ("calc_boom", fake_plugins.calc_boom),
    ])
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(plugin_app):
    c = GraphQLClient(plugin_app)
    yield c
    await c.aclose()


@pytest.mark.parametrize("field", ["boom", "hang", "calcBoom"])
async def test_plugin_failure_is_typed_and_writes_nothing(plugin_app, client, clock, field, caplog):
    services = plugin_app.state.services
    user = await register_member(client, email="iso@example.cn")
    data = {"at": (clock() - timedelta(minutes=5)).isoformat(), "grams": 500}
    out = await submit(client, user["token"], field, data, key="k1")
    assert out["action"] is None
    assert out["userErrors"][0]["code"] == "PLUGIN_FAILURE"
    assert "secret internal detail" not in out["userErrors"][0]["message"]
    assert any(getattr(r, "plugin", None) in ("boom", "hang", "calc_boom") for r in caplog.records)
    assert await count_actions(services) == 0
    # the server keeps serving, the ledger is untouched, the key is not burnt
    ok = await submit(client, user["token"], "ping", data, key="k2")
    assert ok["action"]["status"] == "APPROVED" and await balance(client, user["token"]) == 50
    await ledger_ok(services)


async def test_action_types_query(plugin_app, client):
    data = await client.ok("{ actionTypes { code inputField nameEn version methodology { factors { id value source } } "
                           "caps { dailyGrams } settingsSchema inputSchema } }")
    codes = {t["code"]: t for t in data["actionTypes"]}
    assert set(codes) == {"ping", "boom", "hang", "calc_boom"}
    assert codes["calc_boom"]["inputField"] == "calcBoom"
    assert codes["ping"]["inputSchema"]["properties"]["grams"]["maximum"] == 10_000
    assert "daily_cap_grams" in codes["ping"]["settingsSchema"]["properties"]


async def test_disabled_category_is_refused(gql, member, services, clock):
    # default app: transit/recycling/energy_saving enabled, ping is not
    body = await gql("mutation($i: SubmitActionInput!) { submitAction(input: $i) { action { id } } }",
                     {"i": {"action": {"ping": {"at": clock().isoformat(), "grams": 1}}, "idempotencyKey": "x"}},
                     token=member["token"])
    assert body["errors"] and "ping" in body["errors"][0]["message"]
    assert await count_actions(services) == 0


def test_cli_plugins_list(monkeypatch, capsys):
    from jingtan_api import cli

    monkeypatch.setattr(cli, "_settings", lambda: _settings(["transit"]))
    assert cli.main(["plugins", "list"]) == 0
    lines = dict(line.split("\t", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["transit"].startswith("enabled") and "input field transit" in lines["transit"]
    assert lines["recycling"].startswith("disabled")
    monkeypatch.setattr(cli, "_settings", lambda: _settings(["nope"]))
    assert cli.main(["plugins", "list"]) == 2
    assert "plugin 'nope' is enabled but not installed" in capsys.readouterr().err


async def test_one_of_refuses_two_categories(gql, member, services, clock):
    from tests.actions_helpers import trip

    drop = {"material": "PET", "weightGrams": 100, "stationId": "S", "receiptId": "R", "droppedAt": clock().isoformat()}
    body = await gql("mutation($i: SubmitActionInput!) { submitAction(input: $i) { action { id } } }",
                     {"i": {"action": {"transit": trip(clock), "recycling": drop}, "idempotencyKey": "two"}},
                     token=member["token"])
    assert body["errors"] and "exactly one key" in body["errors"][0]["message"]
    body = await gql("mutation($i: SubmitActionInput!) { submitAction(input: $i) { action { id } } }",
                     {"i": {"action": {}, "idempotencyKey": "none"}}, token=member["token"])
    assert body["errors"]
    assert await count_actions(services) == 0


async def test_points_rate_is_configurable_and_harness_works(tmp_path):
    from jingtan_api.plugins.testing import PluginHarness

    async with PluginHarness([("ping", fake_plugins.ping)], workdir=tmp_path, points={"grams_per_point": 1}) as h:
        at = (h.clock() - timedelta(minutes=1)).isoformat()
        out = await h.submit("ping", {"at": at, "grams": 37})
        assert out["action"]["calculation"]["points"] == 37 and await h.balance() == 37
    async with PluginHarness([("ping", fake_plugins.ping)], workdir=tmp_path) as h:
        out = await h.submit("ping", {"at": (h.clock() - timedelta(minutes=1)).isoformat(), "grams": 37})
        assert out["action"]["calculation"]["points"] == 3  # 10 g per point, rounded down


async def test_api_token_needs_the_actions_write_scope(gql, member, services, clock):
    from jingtan_api.auth.permissions import ROLE_SCOPES

    assert "actions:write" in ROLE_SCOPES["MEMBER"]
    made = await gql.ok(
        "mutation($i: CreateApiTokenInput!) { createApiToken(input: $i) { secret userErrors { code } } }",
        {"i": {"name": "reader", "scopes": ["account:read"]}}, token=member["token"],
    )
    secret = made["createApiToken"]["secret"]
    from tests.actions_helpers import submit, trip

    out = await submit(gql, secret, "transit", trip(clock), key="tok")
    assert out["userErrors"][0]["code"] == "FORBIDDEN"
    assert await count_actions(services) == 0


@pytest.fixture
async def budget_app(db_url, clock):
    settings = make_settings(db_url, plugins={"enabled": [], "ping": {"platform_daily_cap_grams": 100,
                                                                        "daily_cap_grams": 50}})
    app = create_app(settings, clock=clock, plugins=[("ping", fake_plugins.ping)])
    async with app.router.lifespan_context(app):
        yield app


async def test_category_budget_and_member_cap_hold_under_concurrency(budget_app, clock):
    import asyncio

    setup = GraphQLClient(budget_app)
    members = [await register_member(setup, email=f"b{i}@example.cn") for i in range(8)]
    at = (clock() - timedelta(minutes=3)).isoformat()

    async def one(i, j):
        client = GraphQLClient(budget_app)
        try:
            return await submit(client, members[i]["token"], "ping", {"at": at, "grams": 30}, key=f"b{i}-{j}")
        finally:
            await client.aclose()

    results = await asyncio.gather(*(one(i, j) for i in range(8) for j in range(2)))
    credited = [r["action"]["calculation"]["gramsCo2e"] for r in results if r["action"]["status"] == "APPROVED"]
    assert sum(credited) == 100  # the category's daily budget, all members together
    codes = {reason["code"] for r in results for reason in r["action"]["reasons"]}
    assert "CAP_REACHED" in codes
    per_member = {}
    for (i, _j), r in zip([(i, j) for i in range(8) for j in range(2)], results, strict=True):
        if r["action"]["status"] == "APPROVED":
            per_member[i] = per_member.get(i, 0) + r["action"]["calculation"]["gramsCo2e"]
    assert max(per_member.values()) <= 50  # the per-member daily cap
    types = await setup.ok("{ actionTypes { caps { dailyGrams platformDailyGrams } } }")
    assert types["actionTypes"][0]["caps"] == {"dailyGrams": 50, "platformDailyGrams": 100}
    await ledger_ok(budget_app.state.services)
    await setup.aclose()


def test_operator_configuration_from_toml(tmp_path, monkeypatch):
    from jingtan_api.settings import load_settings

    config = tmp_path / "jingtan.toml"
    config.write_text(
        """
database_url = "sqlite+aiosqlite:///unused.db"
[points]
grams_per_point = 5
[plugins]
enabled = ["transit", "recycling"]
[plugins.transit]
review_above_grams = 800
partners = { sz-metro = "abcdefabcdefabcdef" }
mode_daily_cap_grams = { WALK = 200 }
[plugins.transit.factors."transit.metro"]
value = 40.1
source = "Local study 2026"
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("JINGTAN_CONFIG", str(config))
    settings = load_settings()
    host = manager.load_plugins(settings)
    assert sorted(host.action_types) == ["recycling", "transit"]
    transit = host.get("transit")
    assert transit.settings.review_above_grams == 800
    metro = transit.methodology.factor("transit.metro")
    assert str(metro.value) == "40.1" and metro.source == "Local study 2026" and metro.year is None
    assert settings.points.grams_per_point == 5
    config.write_text(config.read_text().replace("mode_daily_cap_grams = { WALK = 200 }", "mode_daily_cap_grams = { CAR = 1 }"))
    with pytest.raises(ConfigurationError, match=r"plugin 'transit': invalid settings \[plugins.transit\]: mode_daily_cap_grams"):
        manager.load_plugins(load_settings())


async def test_huge_credit_goes_to_review_and_is_bounded(tmp_path):
    from jingtan_api.plugins.testing import PluginHarness

    async with PluginHarness([("ping", fake_plugins.ping)], workdir=tmp_path,
                             points={"grams_per_point": 1, "max_single_amount": 1000}) as h:
        at = (h.clock() - timedelta(minutes=1)).isoformat()
        out = await h.submit("ping", {"at": at, "grams": 5000})
        assert out["action"]["status"] == "NEEDS_REVIEW"
        assert out["action"]["reasons"][0]["code"] == "LARGE_CREDIT"
        assert await h.balance() == 0
