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


def test_input_schema_uses_the_graphql_names():
    from pydantic import BaseModel, Field

    from jingtan_api.actions.inputs import graphql_json_schema
    from jingtan_api.plugins.api import ActionInput

    class BinWeight(BaseModel):
        net_kg: int = Field(ge=0)

    class Drop(ActionInput):
        station_id: str
        bin_weights: list[BinWeight] = []
        dropped_at_local: str | None = None

    schema = graphql_json_schema(Drop)
    assert list(schema["properties"]) == ["stationId", "binWeights", "droppedAtLocal"]
    assert schema["required"] == ["stationId"]
    assert list(schema["$defs"]["BinWeight"]["properties"]) == ["netKg"]
    assert schema["$defs"]["BinWeight"]["required"] == ["netKg"]


async def test_harness_submit_takes_the_code_or_the_field_name(tmp_path):
    import sys
    import types
    from datetime import datetime, timedelta

    from pydantic import AwareDatetime

    from jingtan_api.plugins.api import (
        ActionInput, ActionSettings, ActionType, Calculation, Methodology, Verification, grams_from, hookimpl,
    )
    from jingtan_api.plugins.testing import PluginHarness

    class CupInput(ActionInput):
        cup_count: int
        served_at: AwareDatetime

    class CupReuse(ActionType[CupInput, ActionSettings]):
        code = "cup_reuse"
        name_zh = "自带杯"
        name_en = "Cup reuse"

        def base_methodology(self) -> Methodology:
            return Methodology("cups", "test", "cups × 10 g", (api.Factor(id="cup", value=10, unit="g/cup", source="t"),))

        def period(self, input: CupInput) -> tuple[datetime, datetime]:
            return input.served_at, input.served_at

        async def verify(self, input, evidence, ctx) -> Verification:
            return Verification.approved()

        def calculate(self, input, verification, ctx) -> Calculation:
            f = self.base_methodology().factor("cup")
            return Calculation(grams_co2e=grams_from(input.cup_count, f), factors=(f,), formula="")

    module = types.ModuleType("cup_reuse_plugin")
    module.jingtan_register_action_types = hookimpl(lambda: [CupReuse()])
    sys.modules[module.__name__] = module
    try:
        async with PluginHarness([("cup_reuse", module)], workdir=tmp_path) as h:
            at = (h.clock() - timedelta(minutes=1)).isoformat()
            by_code = await h.submit("cup_reuse", {"cupCount": 2, "servedAt": at})
            by_field = await h.submit("cupReuse", {"cupCount": 3, "servedAt": at})
            assert by_code["action"]["status"] == by_field["action"]["status"] == "APPROVED"
            assert by_code["action"]["actionTypeCode"] == by_field["action"]["actionTypeCode"] == "cup_reuse"
            assert await h.balance() == 2 + 3
    finally:
        sys.modules.pop(module.__name__, None)
