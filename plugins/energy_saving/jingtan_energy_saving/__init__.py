"""Energy-saving plugin: household electricity saved against the household's own baseline
(docs/methodology.md, section "Energy saving"; after the Shenzhen residential electricity carbon-inclusion
methodology).

saving (kWh) = baseline − actual consumption of the period, where the baseline is the household's own
average monthly consumption in comparable earlier periods of the same meter (the same months a year
earlier when known, else up to the last 12 recorded months), or — for a meter's first period — a regional
per-capita baseline × household size. reduction = saving × grid emission factor.

Integrity (method, not number): a meter's first period establishes its baseline and credits nothing
unless its readings are signed by a partner utility (HMAC, like the transit plugin's partner records);
the baseline from the household's own history never exceeds the per-capita baseline × household size;
unsigned claims above ``review_unsigned_above_grams`` go to review, and so does consumption far below the
baseline (a vacant home saves nothing by behaviour) and a meter already claimed by another member or
household (a meter belongs to the household: members of one household share its history, plugin API
1.2's ``ctx.scope``); credits are capped per meter and month
(``meter_monthly_cap_grams``) and per household (a member outside one: per member) and month
(``monthly_cap_grams``, ``Caps.per_household``).

Decision: a period with no saving (consumption at or above the baseline) is APPROVED with 0 g and 0 points
and the reason NO_SAVING. It is still recorded so that the meter's readings stay continuous (the next
period must start from its end reading) and the period counts once. Written only against
``jingtan_api.plugins.api``.
"""

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import Field, model_validator

from jingtan_api.plugins.api import (
    ActionInput,
    ActionRecord,
    ActionSettings,
    ActionType,
    Calculation,
    Caps,
    Evidence,
    Factor,
    Methodology,
    PluginContext,
    Reason,
    Status,
    Verification,
    check_signature,
    grams_from,
    hookimpl,
)

__version__ = "1.0.0"
CN = ZoneInfo("Asia/Shanghai")


class GridRegion(str, Enum):
    """Regional power grid of the household. / 所在区域电网。"""

    NORTH = "NORTH"
    EAST = "EAST"
    CENTRAL = "CENTRAL"
    NORTHEAST = "NORTHEAST"
    NORTHWEST = "NORTHWEST"
    SOUTH = "SOUTH"
    SOUTHWEST = "SOUTHWEST"


def _months_between(start: date, end: date) -> int:
    return (end.year - start.year) * 12 + end.month - start.month


class EnergySavingInput(ActionInput):
    """Electricity use of a household meter over whole months. / 家庭电表若干整月的用电。"""

    meter_id: str = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$", description="Meter number. / 电表号。")
    period_start: date = Field(description="First day of the first month. / 起始月第一天。")
    period_end: date = Field(description="First day of the month after the last month (exclusive). / 结束月的下一个月第一天。")
    start_reading_kwh: float = Field(ge=0, le=100_000_000, description="Meter reading at period start, kWh. / 期初读数。")
    end_reading_kwh: float = Field(ge=0, le=100_000_000, description="Meter reading at period end, kWh. / 期末读数。")
    household_size: int | None = Field(None, ge=1, le=20, description="People in the household (first period baseline). / 家庭人数。")
    grid_region: GridRegion | None = Field(None, description="Regional grid; national factor when absent. / 区域电网。")
    has_rooftop_pv: bool = Field(False, description="The household has rooftop solar. / 是否装有屋顶光伏。")

    @model_validator(mode="after")
    def _check(self) -> "EnergySavingInput":
        if self.period_start.day != 1 or self.period_end.day != 1:
            raise ValueError("periodStart and periodEnd must be first days of months")
        months = _months_between(self.period_start, self.period_end)
        if not 1 <= months <= 12:
            raise ValueError("a period covers 1 to 12 whole months")
        if self.end_reading_kwh < self.start_reading_kwh:
            raise ValueError("endReadingKwh must not be below startReadingKwh")
        return self

    @property
    def months(self) -> int:
        return _months_between(self.period_start, self.period_end)

    @property
    def consumption(self) -> Decimal:
        return Decimal(str(self.end_reading_kwh)) - Decimal(str(self.start_reading_kwh))


class EnergySavingSettings(ActionSettings):
    """``[plugins.energy_saving]``."""

    claim_window_days: int = Field(45, ge=1, le=366, description="Days after the period ends during which it may be claimed.")
    exclude_pv_households: bool = Field(True, description="Refuse households with rooftop PV (as Shanghai does).")
    per_capita_baseline_kwh_month: Decimal = Field(
        Decimal(80), gt=0, le=10_000, allow_inf_nan=False,
        description="Per-capita monthly baseline for a meter's first period (operator should set the regional value).",
    )
    default_household_size: Decimal = Field(Decimal("2.62"), gt=0, le=20, allow_inf_nan=False,
                                            description="Household size when not given (2020 census average).")
    max_kwh_per_month: int = Field(10_000, ge=1, description="Higher monthly consumption is implausible for a household.")
    national_factor_id: str = Field("energy.grid.national.2023", description="Factor used when no region is given.")
    partners: dict[str, str] = Field(
        default_factory=dict,
        description="Partner utility id (evidence.source) -> HMAC-SHA256 secret for signed meter readings.",
    )
    signature_max_age_minutes: int = Field(10080, ge=1, description="Signed readings older than this are stale.")
    review_unsigned_above_grams: int = Field(
        5000, ge=0, description="Unsigned periods that would credit more than this go to review."
    )
    meter_monthly_cap_grams: int = Field(
        20000, ge=0, description="Most grams CO2e credited per meter per month of the period."
    )
    review_below_baseline_share: Decimal = Field(
        Decimal("0.5"), ge=0, le=1, allow_inf_nan=False,
        description="Consumption below this share of the baseline goes to review (vacant or misread).",
    )


MEE = "MEE/NBS consumer-side average grid emission factor"
FACTORS = (
    Factor("energy.grid.national.2021", "0.5568", "kgCO2/kWh", MEE, 2021, "CN", ""),
    Factor("energy.grid.national.2022", "0.5366", "kgCO2/kWh", MEE, 2022, "CN", ""),
    Factor("energy.grid.national.2023", "0.5306", "kgCO2/kWh", MEE, 2023, "CN",
           "not 0.5703 (the power-sector compliance factor)"),
    Factor("energy.grid.north.2022", "0.6776", "kgCO2/kWh", MEE, 2022, "CN-North", ""),
    Factor("energy.grid.east.2022", "0.5617", "kgCO2/kWh", MEE, 2022, "CN-East", ""),
    Factor("energy.grid.central.2022", "0.5395", "kgCO2/kWh", MEE, 2022, "CN-Central", ""),
    Factor("energy.grid.northeast.2022", "0.5564", "kgCO2/kWh", MEE, 2022, "CN-Northeast", ""),
    Factor("energy.grid.northwest.2022", "0.5857", "kgCO2/kWh", MEE, 2022, "CN-Northwest", ""),
    Factor("energy.grid.south.2022", "0.3869", "kgCO2/kWh", MEE, 2022, "CN-South", ""),
    Factor("energy.grid.southwest.2022", "0.2268", "kgCO2/kWh", MEE, 2022, "CN-Southwest", ""),
)


def kwh_text(reading: float) -> str:
    """A reading as partners sign it: plain decimal, no exponent, no trailing zeros (1000, 3120.5)."""
    return f"{Decimal(str(reading)).normalize():f}"


def _fmt(d: Decimal) -> str:
    return f"{d.quantize(Decimal('0.01')).normalize():f}"


class EnergySavingActionType(ActionType[EnergySavingInput, EnergySavingSettings]):
    code = "energy_saving"
    name_zh = "家庭节电"
    name_en = "Household electricity saving"
    version = "1.2.0"
    plugin_api_version = "1.2"
    description = "Electricity saved by a household against its own baseline. / 家庭用电较自身基线的节约量。"
    graphql_input_name = "EnergySavingActionInput"
    default_caps = Caps(monthly_grams=30_000, per_household=True)
    """Per household (a member outside one: per member) and month: 30 kg CO2e, 3,000 points."""

    def base_methodology(self) -> Methodology:
        return Methodology(
            title="Household electricity saving / 家庭节电减排",
            reference="Shenzhen residential electricity carbon-inclusion methodology (2022); MEE/NBS grid factors",
            text="Saving = baseline − actual consumption (kWh) for whole months; the baseline is the household's "
            "own average monthly consumption in comparable earlier periods of the meter (the same months a year "
            "earlier when recorded, else up to the last 12 recorded months), or for a first period a per-capita "
            "baseline × household size. Reduction = saving × grid factor (regional 2022 when a region is given, "
            "else national 2023), rounded down to whole grams. No saving credits nothing (recorded with 0 points). "
            "Readings must be monotonic per meter, periods must not overlap, one credit per meter and period; "
            "rooftop-PV households are excluded by default. A meter's first period only establishes its "
            "baseline unless the readings are signed by a partner utility; the own-history baseline never "
            "exceeds the per-capita baseline × household size; unsigned high-value periods, consumption below "
            "half the baseline and meters claimed by another member go to review; credits are capped per meter "
            "and month (20 kg) and per household and month (30 kg). A meter belongs to the household: its periods are "
            "credited once per household whoever of its members submits, and the household's earlier periods form "
            "the baseline.",
            factors=FACTORS,
        )

    def validate_settings(self, settings: EnergySavingSettings) -> None:
        super().validate_settings(settings)
        if settings.national_factor_id not in {f.id for f in FACTORS}:
            raise ValueError(f"national_factor_id {settings.national_factor_id!r} is not a known factor")

    def period(self, input: EnergySavingInput) -> tuple[datetime, datetime]:
        return datetime.combine(input.period_start, time(), CN), datetime.combine(input.period_end, time(), CN)

    def subject(self, input: EnergySavingInput) -> str:
        return input.meter_id

    def evidence_fingerprint(self, input: EnergySavingInput, evidence: Evidence) -> str:
        return f"{input.meter_id}:{input.period_start.isoformat()}"

    def factor_for(self, input: EnergySavingInput, ctx: PluginContext[EnergySavingSettings]) -> Factor:
        m = self.methodology(ctx.settings)
        if input.grid_region is not None:
            return m.factor(f"energy.grid.{input.grid_region.value.lower()}.2022")
        return m.factor(ctx.settings.national_factor_id)

    def signed_record(self, input: EnergySavingInput, evidence: Evidence) -> dict[str, Any]:
        """What a partner utility signs (``sign_record(secret, record, signed_at)``)."""
        return {
            "partner": evidence.source,
            "meter_id": input.meter_id,
            "period_start": input.period_start.isoformat(),
            "period_end": input.period_end.isoformat(),
            "start_reading_kwh": kwh_text(input.start_reading_kwh),
            "end_reading_kwh": kwh_text(input.end_reading_kwh),
        }

    async def verify(
        self, input: EnergySavingInput, evidence: Evidence, ctx: PluginContext[EnergySavingSettings]
    ) -> Verification:
        s = ctx.settings
        if input.has_rooftop_pv and s.exclude_pv_households:
            return Verification.rejected(("PV_EXCLUDED", "Households with rooftop PV are excluded / 装有屋顶光伏的家庭不参与"))
        if input.consumption > s.max_kwh_per_month * input.months:
            return Verification.rejected(
                ("READING_IMPLAUSIBLE", f"More than {s.max_kwh_per_month} kWh per month is not a household / 用电量不合理")
            )
        signed = False
        if evidence.signature is not None:
            secret = s.partners.get(evidence.source or "")
            if secret is None:
                return Verification.rejected(("SIGNATURE_INVALID", "Unknown utility for this signature / 未知的供电合作方"))
            problem = check_signature(
                secret=secret, record=self.signed_record(input, evidence), signature=evidence.signature,
                signed_at=evidence.signed_at, now=ctx.now, max_age=timedelta(minutes=s.signature_max_age_minutes),
            )
            if problem is not None:
                return Verification.rejected(problem)
            signed = True
        history = await ctx.subject_actions(input.meter_id, statuses=(Status.APPROVED, Status.NEEDS_REVIEW))
        start, end = self.period(input)
        earlier: list[ActionRecord] = []
        for record in history:
            if record.occurred_from < end and record.occurred_to > start:
                return Verification.rejected(("PERIOD_OVERLAP", "This meter already has a claim for these months / 该电表此期间已申报"))
            if record.occurred_to <= start:
                earlier.append(record)
        if earlier:
            last = max(earlier, key=lambda r: r.occurred_to)
            if Decimal(str(input.start_reading_kwh)) < Decimal(str(last.input["end_reading_kwh"])):
                return Verification.rejected(
                    ("METER_NOT_MONOTONIC", f"Start reading is below the last recorded reading {last.input['end_reading_kwh']} kWh / 读数小于上次读数")
                )
        for record in history:
            if record.occurred_from >= end and Decimal(str(record.input["start_reading_kwh"])) < Decimal(str(input.end_reading_kwh)):
                return Verification.rejected(("METER_NOT_MONOTONIC", "A later period has a lower reading / 后续期间读数更小"))
        # The meter belongs to the household (plugin API 1.2): earlier claims by any member of the
        # submitter's household are the household's own history, not another claimant's.
        own = [r for r in earlier if ctx.same_scope(r)]
        review: list[Reason] = []
        if any(not ctx.same_scope(r) for r in history):
            review.append(Reason("METER_CLAIMED_BY_OTHER",
                                 "Another member or household already claims this meter / 该电表已由其他用户或家庭申报，需审核"))
        baseline, source = self._baseline(input, own, s)
        baseline_only = not own and not signed
        data = {"baseline_kwh_per_month": str(baseline), "baseline_source": source, "signed": signed,
                "baseline_only": baseline_only}
        reasons: list[Reason] = []
        if baseline_only:
            reasons.append(Reason("BASELINE_PERIOD",
                                  "A meter's first unsigned period establishes its baseline and credits nothing "
                                  "/ 电表首个未经供电方签名的期间仅用于确定基准，不计积分"))
        elif baseline * input.months <= input.consumption:
            reasons.append(Reason("NO_SAVING", "No electricity saved against the baseline; nothing credited / 未较基线节电，不计积分"))
        if input.consumption < baseline * input.months * s.review_below_baseline_share:
            review.append(Reason(
                "CONSUMPTION_IMPLAUSIBLY_LOW",
                f"Less than {_fmt(s.review_below_baseline_share * 100)}% of the baseline used (vacant home or misread meter?) "
                "needs review / 用电量不足基准的一半，需审核",
            ))
        if not signed and self._grams(input, Verification.approved(data=data), ctx)[0] > s.review_unsigned_above_grams:
            review.append(Reason(
                "UNSIGNED_HIGH_VALUE",
                f"Unsigned readings worth more than {s.review_unsigned_above_grams} g need review / 无供电方签名的大额申报需审核",
            ))
        if review:
            return Verification.needs_review(*review, *reasons, data=data)
        return Verification.approved(data=data, reasons=reasons)

    def _baseline(
        self, input: EnergySavingInput, earlier: list[ActionRecord], s: EnergySavingSettings
    ) -> tuple[Decimal, str]:
        size = Decimal(input.household_size) if input.household_size else s.default_household_size
        per_capita = s.per_capita_baseline_kwh_month * size
        per_capita_source = f"per-capita baseline {s.per_capita_baseline_kwh_month} kWh × {size} people"

        def consumption(r: ActionRecord) -> Decimal:
            return Decimal(str(r.input["end_reading_kwh"])) - Decimal(str(r.input["start_reading_kwh"]))

        def months(r: ActionRecord) -> int:
            return _months_between(date.fromisoformat(r.input["period_start"]), date.fromisoformat(r.input["period_end"]))

        def at_most_per_capita(own: Decimal, source: str) -> tuple[Decimal, str]:
            if own > per_capita:
                return per_capita, f"{source}, limited to the {per_capita_source}"
            return own, source

        year_ago = [r for r in earlier
                    if r.input["period_start"] == input.period_start.replace(year=input.period_start.year - 1).isoformat()
                    and r.input["period_end"] == input.period_end.replace(year=input.period_end.year - 1).isoformat()]
        if year_ago:
            r = year_ago[-1]
            return at_most_per_capita(consumption(r) / months(r), "same months one year earlier")
        if earlier:
            recent, total_m = [], 0
            for r in sorted(earlier, key=lambda r: r.occurred_from, reverse=True):
                if total_m >= 12:
                    break
                recent.append(r)
                total_m += months(r)
            return at_most_per_capita(sum((consumption(r) for r in recent), Decimal(0)) / total_m,
                                      f"average of the last {total_m} recorded months")
        return per_capita, per_capita_source

    def _grams(
        self, input: EnergySavingInput, verification: Verification, ctx: PluginContext[EnergySavingSettings]
    ) -> tuple[int, str, Factor]:
        """Grams to credit after the per-meter cap, and the formula."""
        factor = self.factor_for(input, ctx)
        per_month = Decimal(verification.data["baseline_kwh_per_month"])
        baseline = per_month * input.months
        saving = baseline - input.consumption
        head = (f"baseline {_fmt(per_month)} kWh/month × {input.months} ({verification.data['baseline_source']}) − "
                f"actual {_fmt(input.consumption)} kWh = {_fmt(saving)} kWh")
        if verification.data.get("baseline_only"):
            return 0, f"{head}; first period of the meter without a utility signature: baseline only, nothing credited", factor
        if saving <= 0:
            return 0, f"{head}; no saving, nothing credited", factor
        grams = grams_from(saving, factor, scale=1000)
        formula = f"{head} × {factor.value} kg/kWh ({factor.id}) = {grams} g"
        cap = ctx.settings.meter_monthly_cap_grams * input.months
        if grams > cap:
            formula += f"; capped to {cap} g by the meter's limit of {ctx.settings.meter_monthly_cap_grams} g per month"
            grams = cap
        return grams, formula, factor

    def calculate(
        self, input: EnergySavingInput, verification: Verification, ctx: PluginContext[EnergySavingSettings]
    ) -> Calculation:
        grams, formula, factor = self._grams(input, verification, ctx)
        return Calculation(grams_co2e=grams, factors=(factor,), formula=formula)


@hookimpl
def jingtan_register_action_types() -> list[ActionType[Any, Any]]:
    return [EnergySavingActionType()]
