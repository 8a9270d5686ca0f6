"""Recycling plugin: drop-offs of sorted recyclables at a station (docs/methodology.md, section "Recycling").

reduction = weight (kg) × life-cycle factor (kg CO2e avoided per kg of material). The default factors are
US EPA WARM v16 and Hong Kong Zero2 figures — not Chinese local methodologies — and operators may replace
them in ``[plugins.recycling.factors.<id>]``. Written only against ``jingtan_api.plugins.api``.
"""

from datetime import datetime, timedelta
from enum import Enum
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
    FactorOverride,
    Methodology,
    PluginContext,
    Verification,
    check_signature,
    grams_from,
    hookimpl,
)

__version__ = "1.0.0"


class RecyclingMaterial(str, Enum):
    """Sorted material handed in. / 回收物类别。"""

    PAPER = "PAPER"
    PET = "PET"
    GLASS = "GLASS"
    ALUMINIUM = "ALUMINIUM"
    STEEL = "STEEL"
    TEXTILES = "TEXTILES"
    E_WASTE = "E_WASTE"


class RecyclingInput(ActionInput):
    """A drop-off at a recycling station. / 一次回收投递。"""

    material: RecyclingMaterial = Field(description="Material. / 材料。")
    weight_grams: int = Field(gt=0, le=1_000_000, description="Weight in grams, as weighed by the station. / 重量（克）。")
    station_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$", description="Station id. / 回收站编号。")
    receipt_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$", description="Receipt id printed by the station. / 小票编号。")
    dropped_at: AwareDatetime = Field(description="When it was weighed (with time zone). / 投递时间。")


DEFAULT_MAX_WEIGHT = 50_000


class RecyclingSettings(ActionSettings):
    """``[plugins.recycling]``."""

    stations: dict[str, str] = Field(default_factory=dict, description="Station id -> HMAC-SHA256 secret for signed receipts.")
    signature_max_age_minutes: int = Field(1440, ge=1, description="Signatures older than this are stale.")
    max_weight_grams: dict[RecyclingMaterial, int] = Field(
        default_factory=dict, description=f"Largest weight per submission per material (default {DEFAULT_MAX_WEIGHT} g)."
    )
    review_above_grams_co2e: int = Field(10_000, ge=0, description="Unsigned drop-offs worth more go to review.")
    e_waste_factor: FactorOverride | None = Field(
        None, description="Factor (kg CO2e/kg) for e-waste; E_WASTE is refused until one is configured."
    )


WARM = "US EPA WARM v16"
ZERO2 = "Zero2 (Hong Kong)"
FACTORS = (
    Factor("recycling.paper", "3.5", "kgCO2e/kg", f"{WARM} (corrugated), converted from short tons", 2023, "US",
           "mixed paper 3.9 (WARM), 3.62 (Zero2); conservative value used"),
    Factor("recycling.pet", "0.95", "kgCO2e/kg", f"{ZERO2} (plastic, generic)", None, "HK", "PET 1.15 in WARM"),
    Factor("recycling.glass", "0.30", "kgCO2e/kg", ZERO2, None, "HK", "0.31 in WARM"),
    Factor("recycling.aluminium", "9.15", "kgCO2e/kg", f"{ZERO2} (metal, generic)", None, "HK", "10.1 in WARM (cans)"),
    Factor("recycling.steel", "2.0", "kgCO2e/kg", f"{WARM} steel cans", 2023, "US", ""),
    Factor("recycling.textiles", "3.6", "kgCO2e/kg", "BIR 2008 study, widely cited in China", 2008, None,
           "12.64 in Zero2 (clothing); conservative value used"),
)
FACTOR_OF = {m: f"recycling.{m.value.lower()}" for m in RecyclingMaterial}


class RecyclingActionType(ActionType[RecyclingInput, RecyclingSettings]):
    code = "recycling"
    name_zh = "垃圾分类回收"
    name_en = "Recycling drop-off"
    version = "1.0.0"
    description = "Sorted recyclables weighed at a partner station. / 在合作回收站投递并称重的可回收物。"
    graphql_input_name = "RecyclingActionInput"
    default_caps = Caps(daily_grams=20_000)

    def base_methodology(self) -> Methodology:
        return Methodology(
            title="Recycling: avoided life-cycle emissions per kg / 回收减排",
            reference="US EPA WARM v16; Zero2 (Hong Kong); BIR 2008; shape per T/ACEF 161-2024 (ER = BE − PE)",
            text="Reduction = weight (kg) × factor of the material (kg CO2e avoided per kg), rounded down to whole "
            "grams. These are life-cycle figures from the US and Hong Kong, not local Chinese methodologies; "
            "operators can replace them. Each receipt counts once per station; weights above the per-material "
            "maximum are refused; e-waste is refused until a factor is configured.",
            factors=FACTORS,
        )

    def methodology(self, settings: RecyclingSettings) -> Methodology:
        m = super().methodology(settings)
        if settings.e_waste_factor is None:
            return m
        o = settings.e_waste_factor
        extra = Factor("recycling.e_waste", o.value, "kgCO2e/kg", o.source or "operator configuration", o.year, None, o.note or "")
        return Methodology(m.title, m.reference, m.text, (*m.factors, extra))

    def period(self, input: RecyclingInput) -> tuple[datetime, datetime]:
        return input.dropped_at, input.dropped_at

    def subject(self, input: RecyclingInput) -> str:
        return input.station_id

    def evidence_fingerprint(self, input: RecyclingInput, evidence: Evidence) -> str:
        return f"{input.station_id}:{input.receipt_id}"

    def signed_record(self, input: RecyclingInput) -> dict[str, Any]:
        return {
            "station_id": input.station_id,
            "receipt_id": input.receipt_id,
            "material": input.material.value,
            "weight_grams": input.weight_grams,
            "dropped_at": input.dropped_at.isoformat(),
        }

    async def verify(
        self, input: RecyclingInput, evidence: Evidence, ctx: PluginContext[RecyclingSettings]
    ) -> Verification:
        s = ctx.settings
        if input.material == RecyclingMaterial.E_WASTE and s.e_waste_factor is None:
            return Verification.rejected(
                ("MATERIAL_DISABLED", "E-waste is not credited yet (no factor configured) / 电子废弃物暂不计入")
            )
        limit = s.max_weight_grams.get(input.material, DEFAULT_MAX_WEIGHT)
        if input.weight_grams > limit:
            return Verification.rejected(
                ("WEIGHT_IMPLAUSIBLE", f"At most {limit} g of {input.material.value} per drop-off / 单次重量超出上限")
            )
        if evidence.signature is not None:
            secret = s.stations.get(input.station_id)
            if secret is None:
                return Verification.rejected(("SIGNATURE_INVALID", "Unknown station for this signature / 未知回收站"))
            problem = check_signature(
                secret=secret, record=self.signed_record(input), signature=evidence.signature,
                signed_at=evidence.signed_at, now=ctx.now, max_age=timedelta(minutes=s.signature_max_age_minutes),
            )
            if problem is not None:
                return Verification.rejected(problem)
            return Verification.approved(data={"signed": True})
        grams = self._grams(input, ctx)[0]
        if grams > s.review_above_grams_co2e:
            return Verification.needs_review(
                ("UNSIGNED_HIGH_VALUE", f"Unsigned drop-off worth more than {s.review_above_grams_co2e} g needs review / 无签名的大额回收需审核")
            )
        return Verification.approved()

    def _grams(self, input: RecyclingInput, ctx: PluginContext[RecyclingSettings]) -> tuple[int, Factor]:
        factor = self.methodology(ctx.settings).factor(FACTOR_OF[input.material])
        # weight g × (kg CO2e / kg) = g CO2e
        return grams_from(input.weight_grams, factor), factor

    def calculate(
        self, input: RecyclingInput, verification: Verification, ctx: PluginContext[RecyclingSettings]
    ) -> Calculation:
        grams, factor = self._grams(input, ctx)
        kg = f"{input.weight_grams / 1000:g}"
        return Calculation(
            grams_co2e=grams, factors=(factor,), formula=f"{kg} kg × {factor.value} kg CO2e/kg ({factor.id}) = {grams} g"
        )


@hookimpl
def jingtan_register_action_types() -> list[ActionType[Any, Any]]:
    return [RecyclingActionType()]
