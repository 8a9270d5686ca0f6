"""docs/plugins.md covers the whole public plugin API: every name ``jingtan_api.plugins.api`` exports,
every class attribute and method of ``ActionType``, every helper of ``jingtan_api.plugins.testing``."""

import re
from pathlib import Path

import jingtan_api.plugins.api as api
import jingtan_api.plugins.testing as testing

GUIDE = (Path(__file__).resolve().parent.parent / "docs" / "plugins.md").read_text(encoding="utf-8")
MENTIONED = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)", GUIDE))


def public_names() -> list[str]:
    action_type = [n for n in (*api.ActionType.__annotations__, *vars(api.ActionType)) if not n.startswith("_")]
    return sorted({*api.__all__, *action_type, *testing.__all__})


def test_every_public_name_is_in_the_guide():
    missing = [n for n in public_names() if n not in MENTIONED]
    assert missing == [], f"docs/plugins.md does not mention: {missing}"


def test_the_check_sees_a_missing_name():
    assert "jingtan_register_action_types" in MENTIONED
    assert "NotARealName" not in MENTIONED
    assert {"description", "graphql_input_name", "grams_from", "Factor"} <= set(public_names())
