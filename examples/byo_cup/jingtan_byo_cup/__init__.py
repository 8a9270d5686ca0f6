"""Bring your own cup (自带杯) at partner cafés: a third-party Jingtan action plugin.

A café's till records that a drink was served in the customer's own cup; the member submits the till's
order id. Reduction = cups × factor (g CO2e of one single-use paper cup with lid, default 30 g — an
illustrative value an operator must replace with a sourced one). One credit per café order; at most
5 cups a day per member. Only ``jingtan_api.plugins.api`` is imported, as the plugin guide requires.
"""

from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, Field

from jingtan_api.plugins.api import (
    ActionInput,
    ActionSettings,
    ActionType,
    Calculation,
    Caps,
    Evidence,
    Factor,
    Methodology,
    PluginContext,
    Verification,
    check_signature,
    grams_from,
    hookimpl,
)

__version__ = "0.1.0"


class ByoCupInput(ActionInput):
    """Drinks served in the member's own cup. / 自带杯购买饮品。"""

    cafe_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="Partner café id. / 咖啡馆编号。")
    order_id: str = Field(min_length=1, max_length=64, description="Order id printed on the receipt. / 订单号。")
    cups: int = Field(ge=1, le=10, description="Drinks served in own cups. / 杯数。")
    served_at: AwareDatetime = Field(description="When the drinks were served. / 时间。")


class ByoCupSettings(ActionSettings):
    """``[plugins.byo_cup]``."""

    cafes: dict[str, str] = Field(default_factory=dict, description="Café id -> HMAC secret of its till.")
    require_signature: bool = Field(False, description="Refuse orders without a valid till signature.")


class ByoCupActionType(ActionType[ByoCupInput, ByoCupSettings]):
    code = "byo_cup"
    name_zh = "自带杯"
    name_en = "Bring your own cup"
    version = "0.1.0"
    plugin_api_version = "1.1"  # type arguments give Input and Settings
    description = "A drink bought in your own cup at a partner café. / 在合作咖啡馆使用自带杯。"
    graphql_input_name = "ByoCupActionInput"
    default_caps = Caps(daily_grams=150)

    def base_methodology(self) -> Methodology:
        return Methodology(
            title="Avoided single-use cups / 减少一次性杯",
            reference="illustrative; replace with a sourced life-cycle value",
            text="Reduction = cups × grams CO2e of one single-use paper cup with lid.",
            factors=(Factor("byo_cup.paper_cup", "30", "gCO2e/cup", "illustrative example value", None, None,
                            "operators must configure a sourced value"),),
        )

    def period(self, input: ByoCupInput) -> tuple[datetime, datetime]:
        return input.served_at, input.served_at

    def evidence_fingerprint(self, input: ByoCupInput, evidence: Evidence) -> str:
        return f"{input.cafe_id}:{input.order_id}"

    async def verify(self, input: ByoCupInput, evidence: Evidence, ctx: PluginContext[ByoCupSettings]) -> Verification:
        s = ctx.settings
        if evidence.signature is None:
            if s.require_signature:
                return Verification.rejected(("SIGNATURE_REQUIRED", "The café must sign the order / 需要咖啡馆签名"))
            return Verification.approved()
        secret = s.cafes.get(input.cafe_id)
        if secret is None:
            return Verification.rejected(("SIGNATURE_INVALID", "Unknown café / 未知咖啡馆"))
        record = {"cafe_id": input.cafe_id, "order_id": input.order_id, "cups": input.cups}
        problem = check_signature(secret=secret, record=record, signature=evidence.signature,
                                  signed_at=evidence.signed_at, now=ctx.now, max_age=timedelta(hours=24))
        return Verification.rejected(problem) if problem else Verification.approved()

    def calculate(self, input: ByoCupInput, verification: Verification, ctx: PluginContext[ByoCupSettings]) -> Calculation:
        factor = self.methodology(ctx.settings).factors[0]
        grams = grams_from(input.cups, factor)
        return Calculation(grams_co2e=grams, factors=(factor,), formula=f"{input.cups} × {factor.value} g = {grams} g")


@hookimpl
def jingtan_register_action_types() -> list[ActionType[Any, Any]]:
    return [ByoCupActionType()]
