"""Plugins for host tests: one per way a plugin can misbehave. Loaded through fake entry points."""

import asyncio
from datetime import datetime
from decimal import Decimal
from enum import Enum

from pydantic import AwareDatetime, Field

from jingtan_api.plugins.api import (
    ActionInput,
    ActionSettings,
    ActionType,
    Calculation,
    Factor,
    Methodology,
    Verification,
    hookimpl,
)


class PingInput(ActionInput):
    """A test action. / 测试。"""

    at: AwareDatetime = Field(description="When.")
    grams: int = Field(ge=0, le=10_000, description="Grams to credit.")


class Ping(ActionType):
    code = "ping"
    name_zh = "测试"
    name_en = "Ping"
    Input = PingInput

    def base_methodology(self) -> Methodology:
        return Methodology("Ping", "none", "test", (Factor("ping.unit", "1", "g/g", "test"),))

    def period(self, input: PingInput) -> tuple[datetime, datetime]:
        return input.at, input.at

    async def verify(self, input, evidence, ctx) -> Verification:
        return Verification.approved()

    def calculate(self, input, verification, ctx) -> Calculation:
        f = self.base_methodology().factors[0]
        return Calculation(grams_co2e=input.grams, factors=(f,), formula=f"{input.grams} g")


class Boom(Ping):
    code = "boom"
    graphql_input_name = "BoomActionInput"

    async def verify(self, input, evidence, ctx) -> Verification:
        raise RuntimeError("secret internal detail")


class CalcBoom(Ping):
    code = "calc_boom"

    def calculate(self, input, verification, ctx) -> Calculation:
        return Calculation(grams_co2e=-5, factors=(), formula="")  # raises ValueError


class Hang(Ping):
    code = "hang"

    async def verify(self, input, evidence, ctx) -> Verification:
        await asyncio.sleep(60)
        return Verification.approved()


class NeedsKeySettings(ActionSettings):
    api_key: str = Field(min_length=8, description="Required key.")


class NeedsKey(Ping):
    code = "needs_key"
    Settings = NeedsKeySettings


class DupTransit(Ping):
    code = "transit"


class SameInputName(Ping):
    code = "other_ping"
    graphql_input_name = "PingActionInput"


class AccountKind(str, Enum):
    """Clashes with the core enum of the same name."""

    A = "A"


class CoreClashInput(ActionInput):
    kind: AccountKind
    at: AwareDatetime


class CoreClash(Ping):
    code = "core_clash"
    Input = CoreClashInput


class FutureApi(Ping):
    code = "future_api"
    plugin_api_version = "2.0"


class MethodologyBoom(Ping):
    code = "methodology_boom"

    def methodology(self, settings) -> Methodology:
        raise KeyError("factor table missing")


class CapsBoom(Ping):
    code = "caps_boom"

    def caps(self, settings):
        raise AttributeError("'NoneType' object has no attribute 'daily'")


class SettingsCheckBoom(Ping):
    code = "settings_check_boom"

    def validate_settings(self, settings) -> None:
        raise TypeError("unsupported operand type(s)")


class CupSize(str, Enum):
    """Cup size. / 杯型。"""

    SMALL = "small"
    LARGE = "large"


class DefaultsInput(ActionInput):
    """Fields whose defaults GraphQL cannot show. / 带默认值的字段。"""

    at: AwareDatetime = Field(description="When.")
    size: CupSize = Field(CupSize.LARGE, description="An enum default.")
    factor: Decimal = Field(Decimal("1.5"), description="A Decimal default.")
    tags: list[str] = Field(default_factory=lambda: ["reusable"], description="A default_factory.")
    note: str = Field("none", description="A plain default.")


class Defaults(Ping):
    code = "defaults"
    Input = DefaultsInput

    def period(self, input: DefaultsInput) -> tuple[datetime, datetime]:
        return input.at, input.at

    def calculate(self, input, verification, ctx) -> Calculation:
        f = self.base_methodology().factors[0]
        formula = f"{input.size.value} {input.factor} {','.join(input.tags)} {input.note}"
        return Calculation(grams_co2e=int(100 * input.factor), factors=(f,), formula=formula)


class Plugin:
    """A plugin object registering the given action types."""

    def __init__(self, *types: type[ActionType]) -> None:
        self.types = types

    @hookimpl
    def jingtan_register_action_types(self) -> list[ActionType]:
        return [t() for t in self.types]


class RaisingPlugin:
    @hookimpl
    def jingtan_register_action_types(self) -> list[ActionType]:
        raise KeyError("oops")


class MisspelledPlugin:
    """Implements ``jingtan_register_action_type`` (no s): a hook no specification knows."""

    @hookimpl
    def jingtan_register_action_type(self) -> list[ActionType]:
        return [Ping()]


class NoInput(ActionType):
    """Neither type arguments nor ``Input = ...``."""

    code = "no_input"
    name_zh = "无输入"
    name_en = "No input"


ping = Plugin(Ping)
boom = Plugin(Boom)
calc_boom = Plugin(CalcBoom)
hang = Plugin(Hang)
needs_key = Plugin(NeedsKey)
dup_transit = Plugin(DupTransit)
same_input_name = Plugin(SameInputName)
core_clash = Plugin(CoreClash)
future_api = Plugin(FutureApi)
raising = RaisingPlugin()
misspelled = MisspelledPlugin()
no_input = Plugin(NoInput)
methodology_boom = Plugin(MethodologyBoom)
caps_boom = Plugin(CapsBoom)
settings_check_boom = Plugin(SettingsCheckBoom)
defaults = Plugin(Defaults)
