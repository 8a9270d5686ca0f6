"""The typed plugin facade: ``ActionType[Input, Settings]`` gives the models (at run time) and types
``verify``/``calculate``/``ctx.settings`` (for mypy); plugins written against API 1.0 still load.

The static half runs mypy (the version of the ``dev`` extra, with the project's configuration) on a snippet
and compares every message with the ``# expect:`` comments in it, so a facade that silently degrades to
``Any`` fails here even though ``make lint`` would still pass."""

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from jingtan_transit import TransitActionType, TransitInput, TransitSettings
from pydantic import AwareDatetime, Field

from jingtan_api.plugins.api import (
    ActionInput,
    ActionSettings,
    ActionType,
    Calculation,
    Evidence,
    Factor,
    InputT,
    Methodology,
    PluginContext,
    Verification,
    hookimpl,
)
from jingtan_api.plugins.testing import PluginHarness, make_context

ROOT = Path(__file__).resolve().parent.parent


class CupInput(ActionInput):
    cups: int = Field(ge=1, le=10)


class BigCupInput(CupInput):
    big: bool = False


class CupSettings(ActionSettings):
    per_cup_grams: int = 30


def test_models_come_from_the_type_arguments():
    class Cup(ActionType[CupInput, CupSettings]):
        code = "cup"

    assert Cup.Input is CupInput and Cup.Settings is CupSettings
    assert TransitActionType.Input is TransitInput and TransitActionType.Settings is TransitSettings
    ctx = make_context(Cup(), settings={"per_cup_grams": 40})
    assert type(ctx.settings) is CupSettings and ctx.settings.per_cup_grams == 40


def test_a_generic_intermediate_base_passes_its_arguments_on():
    class CafeBase(ActionType[InputT, CupSettings]):
        """Shared rules of several café categories; each picks its input."""

    class BigCup(CafeBase[BigCupInput]):
        code = "big_cup"

    assert not hasattr(CafeBase, "Input") and CafeBase.Settings is CupSettings
    assert BigCup.Input is BigCupInput and BigCup.Settings is CupSettings


def test_explicit_models_must_agree_with_the_type_arguments():
    class Narrower(ActionType[CupInput, CupSettings]):
        Input = BigCupInput  # a subclass of the argument is fine

    assert Narrower.Input is BigCupInput and Narrower.Settings is CupSettings
    with pytest.raises(TypeError, match=r"Mismatch.Settings = .* does not match its type argument CupSettings"):

        class Mismatch(ActionType[CupInput, CupSettings]):
            Settings = ActionSettings


def test_settings_default_to_action_settings_and_are_inherited():
    class Plain(ActionType):  # the 1.0 way
        Input = CupInput

    class Child(Plain):
        pass

    assert Plain.Settings is ActionSettings and Child.Input is CupInput and Child.Settings is ActionSettings


# --- an API 1.0 plugin, unchanged: bare ActionType and PluginContext, Input/Settings set by hand -----------


class LegacyInput(ActionInput):
    cups: int = Field(ge=1, le=10)
    at: AwareDatetime


class LegacySettings(ActionSettings):
    per_cup_grams: int = 30


class LegacyCup(ActionType):
    code = "legacy_cup"
    name_zh = "旧式自带杯"
    name_en = "Legacy cup"
    plugin_api_version = "1.0"
    Input = LegacyInput
    Settings = LegacySettings

    def base_methodology(self) -> Methodology:
        return Methodology("Cups", "none", "cups × g", (Factor("legacy_cup.cup", "1", "g/g", "test"),))

    def period(self, input):
        return input.at, input.at

    async def verify(self, input, evidence: Evidence, ctx: PluginContext) -> Verification:
        return Verification.approved()

    def calculate(self, input, verification: Verification, ctx: PluginContext) -> Calculation:
        grams = input.cups * ctx.settings.per_cup_grams
        return Calculation(grams_co2e=grams, factors=self.base_methodology().factors, formula=f"{grams} g")


class LegacyPlugin:
    @hookimpl
    def jingtan_register_action_types(self):
        return [LegacyCup()]


async def test_a_plugin_api_1_0_plugin_still_loads_and_credits(tmp_path):
    async with PluginHarness([("legacy", LegacyPlugin())], workdir=tmp_path,
                             settings={"legacy_cup": {"per_cup_grams": 50}}) as h:
        out = await h.submit("legacyCup", {"cups": 2, "at": (h.clock() - timedelta(minutes=1)).isoformat()})
        assert out["action"]["status"] == "APPROVED", out
        assert out["action"]["calculation"]["gramsCo2e"] == 100 and await h.balance() == 10


# --- static: what mypy sees -----------------------------------------------------------------------------

SNIPPET = '''
from datetime import datetime
from typing import Any

from jingtan_transit import TransitActionType

from jingtan_api.actions.service import DatabaseHistory
from jingtan_api.plugins.api import (
    ActionInput, ActionRecord, ActionSettings, ActionType, Calculation, Evidence, HistorySource, PluginContext,
    Status, Verification,
)
from jingtan_api.plugins.testing import FakeHistory, make_context


class SnipInput(ActionInput):
    n: int


class SnipSettings(ActionSettings):
    limit: int = 3


class Snip(ActionType[SnipInput, SnipSettings]):
    code = "snip"

    def period(self, input: SnipInput) -> tuple[datetime, datetime]:
        reveal_type(input.n)  # expect: Revealed type is "int"
        raise NotImplementedError

    async def verify(self, input: SnipInput, evidence: Evidence, ctx: PluginContext[SnipSettings]) -> Verification:
        reveal_type(ctx.settings)  # expect: Revealed type is "snippet.SnipSettings"
        ctx.settings.no_such_setting  # expect: "SnipSettings" has no attribute "no_such_setting"
        return Verification.approved()

    def calculate(self, input: SnipInput, verification: Verification, ctx: PluginContext[SnipSettings]) -> Calculation:
        return Calculation(grams_co2e=ctx.settings.limit, factors=(), formula="")


class WrongInput(ActionType[SnipInput, SnipSettings]):
    def period(self, input: int) -> tuple[datetime, datetime]:  # expect: violates the Liskov substitution principle
        raise NotImplementedError


class WrongModel(ActionType[SnipInput, SnipSettings]):
    Settings = ActionSettings  # expect: Incompatible types in assignment


reveal_type(Snip().Input)  # expect: Revealed type is "type[snippet.SnipInput]"
reveal_type(make_context(TransitActionType()).settings)  # expect: Revealed type is "jingtan_transit.TransitSettings"


class NotAHistory:
    async def member_actions(self, code: str) -> list[ActionRecord]:
        return []


def histories(db: Any) -> list[HistorySource]:
    fake: HistorySource = FakeHistory()
    real: HistorySource = DatabaseHistory(db)
    wrong: HistorySource = NotAHistory()  # expect: Incompatible types in assignment
    return [fake, real, wrong]


async def record_statuses(history: HistorySource) -> list[Status]:
    return [r.status for r in await history.subject_actions("snip", "meter-1", (Status.APPROVED,))]
'''


def _expectations(source: str) -> dict[int, str]:
    return {n: m.group(1).strip() for n, line in enumerate(source.splitlines(), 1)
            if (m := re.search(r"# expect: (.*)$", line))}


def test_mypy_sees_the_types_of_the_facade(tmp_path):
    pytest.importorskip("mypy")
    snippet = tmp_path / "snippet.py"
    snippet.write_text(SNIPPET, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--hide-error-context",
         "--no-error-summary", str(snippet)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    messages: dict[int, list[str]] = {}
    for line in result.stdout.splitlines():
        m = re.match(r"(?:.*/)?snippet\.py:(\d+): (?:error|note): (.*)$", line)
        assert m, f"unexpected mypy output: {line}\n{result.stdout}{result.stderr}"
        messages.setdefault(int(m.group(1)), []).append(m.group(2))
    expected = _expectations(SNIPPET)
    assert len(expected) == 8
    for lineno, text in expected.items():
        assert any(text in msg for msg in messages.get(lineno, [])), (lineno, text, result.stdout)
    unexpected = {n: msgs for n, msgs in messages.items() if n not in expected}
    assert not unexpected, result.stdout
