"""The hooks of the plugin host, one ``test_hook_<name>`` per hook specification (tests/test_hookspecs_documented.py
checks that each has one), and ``pm.check_pending()``: an implementation of a hook that no specification
knows stops startup with one line naming the plugin."""

import pytest

from jingtan_api.app import create_app
from jingtan_api.plugins.api import ActionType, hookimpl
from jingtan_api.plugins.manager import load_plugins
from jingtan_api.settings import ConfigurationError
from jingtan_api.testing import make_settings
from tests import fake_plugins


def _settings(**plugin_tables):
    return make_settings("sqlite+aiosqlite:////tmp/jingtan-never-opened.db", plugins={"enabled": [], **plugin_tables})


class Counting:
    """Registers the given action types and counts how often the host asked."""

    def __init__(self, result) -> None:
        self.result = result
        self.calls = 0

    @hookimpl
    def jingtan_register_action_types(self) -> list[ActionType]:
        self.calls += 1
        return self.result


def test_hook_jingtan_register_action_types():
    two = Counting([fake_plugins.Ping(), fake_plugins.Boom()])
    host = load_plugins(_settings(ping={"daily_cap_grams": 7}), plugins=[("two", two), ("none", Counting(None))])
    assert two.calls == 1
    assert sorted(host.action_types) == ["boom", "ping"]
    assert {t.plugin for t in host.action_types.values()} == {"two"}
    assert host.get("ping").settings.daily_cap_grams == 7 and host.get("ping").caps.daily_grams == 7
    # a generator is a fine result; anything not iterable, or not an ActionType, stops startup naming the plugin
    assert list(load_plugins(_settings(), plugins=[("gen", Counting(t for t in [fake_plugins.Ping()]))]).action_types) == ["ping"]
    with pytest.raises(ConfigurationError, match=r"^plugin 'num': jingtan_register_action_types failed: TypeError: returned int"):
        load_plugins(_settings(), plugins=[("num", Counting(3))])
    with pytest.raises(ConfigurationError, match=r"^plugin 'str_item': returned 'ping', not an ActionType$"):
        load_plugins(_settings(), plugins=[("str_item", Counting(["ping"]))])


@pytest.mark.parametrize("order", ["good first", "misspelled first"])
def test_a_misspelled_hook_fails_startup_naming_the_plugin(order):
    plugins = [("ping", fake_plugins.ping), ("typo", fake_plugins.misspelled)]
    if order == "misspelled first":
        plugins.reverse()
    with pytest.raises(ConfigurationError) as info:
        create_app(_settings(), plugins=plugins)
    message = str(info.value)
    assert message.startswith("plugin 'typo': unknown hook 'jingtan_register_action_type' (no such hook "
                              "specification; this server provides "), message
    assert "jingtan_register_action_types" in message.split("provides ")[1] and "\n" not in message


class FromANewerApi:
    """Implements a hook of a future plugin API as optional, next to a hook this server has."""

    @hookimpl(optionalhook=True)
    def jingtan_hook_of_a_future_api(self) -> None:
        raise AssertionError("never called: this server has no such hook")

    @hookimpl
    def jingtan_register_action_types(self) -> list[ActionType]:
        return [fake_plugins.Ping()]


def test_an_optional_unknown_hook_is_allowed():
    host = load_plugins(_settings(), plugins=[("newer", FromANewerApi())])
    assert list(host.action_types) == ["ping"]
