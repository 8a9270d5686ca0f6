"""Transit plugin: walking, cycling, e-bike, bus and metro trips (docs/methodology.md, section "Transit").

reduction = distance_km × per-mode factor (grams CO2e per passenger-km avoided against the baseline
traffic mix). Written only against ``jingtan_api.plugins.api``.
"""

from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from jingtan_api.plugins.api import (
    ActionInput,
    ActionSettings,
    ActionType,
    Calculation,
    Evidence,
    Factor,
    Methodology,
    PluginContext,
    Status,
    Verification,
    check_signature,
    grams_from,
    hookimpl,
)

__version__ = "1.0.0"


class TransitMode(str, Enum):
    """Mode of a trip. / 出行方式。"""

    WALK = "WALK"
    BICYCLE = "BICYCLE"
    EBIKE = "EBIKE"
    BUS = "BUS"
    METRO = "METRO"



class GpsTraceSummary(BaseModel):
    """Summary of the GPS trace recorded by the app. / GPS 轨迹摘要。"""

    model_config = ConfigDict(extra="forbid")
    point_count: int = Field(ge=2, le=1_000_000, description="Number of GPS fixes. / 定位点数。")
    distance_meters: int = Field(ge=0, le=1_000_000, description="Distance along the trace, metres. / 轨迹距离（米）。")


class TransitInput(ActionInput):
    """A trip. / 一次出行。"""

    mode: TransitMode = Field(description="Mode of transport. / 出行方式。")
    started_at: AwareDatetime = Field(description="Start of the trip (with time zone). / 出发时间。")
    ended_at: AwareDatetime = Field(description="End of the trip (with time zone). / 到达时间。")
    distance_meters: int = Field(gt=0, le=1_000_000, description="Distance travelled, metres. / 距离（米）。")
    gps_trace: GpsTraceSummary | None = Field(None, description="Optional GPS trace summary. / 可选 GPS 轨迹摘要。")
    partner_trip_id: str | None = Field(
        None, min_length=1, max_length=100, description="Trip record id at the partner (metro/bus/bike operator). / 合作方行程编号。"
    )


DEFAULT_MAX_SPEED_KMH: dict[TransitMode, float] = {
    TransitMode.WALK: 7, TransitMode.BICYCLE: 30, TransitMode.EBIKE: 25, TransitMode.BUS: 60, TransitMode.METRO: 100,
}
DEFAULT_MAX_DISTANCE_M: dict[TransitMode, int] = {
    TransitMode.WALK: 30_000, TransitMode.BICYCLE: 100_000, TransitMode.EBIKE: 100_000, TransitMode.BUS: 150_000,
    TransitMode.METRO: 150_000,
}


class TransitSettings(ActionSettings):
    """``[plugins.transit]``."""

    partners: dict[str, str] = Field(
        default_factory=dict, description="Partner id (evidence.source) -> HMAC-SHA256 secret for signed trip records."
    )
    signature_max_age_minutes: int = Field(1440, ge=1, description="Signatures older than this are stale.")
    review_above_grams: int = Field(
        500, ge=0, description="Unsigned trips that would credit more than this go to review."
    )
    min_distance_meters: int = Field(100, ge=1, description="Shorter trips are refused.")
    min_duration_seconds: int = Field(60, ge=1, description="Shorter trips are refused.")
    max_speed_kmh: dict[TransitMode, float] = Field(
        default_factory=lambda: dict(DEFAULT_MAX_SPEED_KMH), description="Highest plausible average speed per mode."
    )
    max_distance_meters: dict[TransitMode, int] = Field(
        default_factory=lambda: dict(DEFAULT_MAX_DISTANCE_M), description="Longest plausible trip per mode."
    )
    mode_daily_cap_grams: dict[TransitMode, int] = Field(
        default_factory=lambda: {TransitMode.WALK: 296},
        description="Most grams CO2e per member per day for a mode (walking 296 g/day like Ant Forest).",
    )


SZ_SOURCE = "Shenzhen low-carbon public transport carbon-inclusion methodology (trial), Dec 2021"
MT_SOURCE = "Meituan shared-bike figure (≈ per km)"

FACTORS = (
    Factor("transit.metro", "46.7", "gCO2e/pkm", SZ_SOURCE, 2021, "CN-Shenzhen", "vs. baseline traffic mix"),
    Factor("transit.bus", "26.9", "gCO2e/pkm", SZ_SOURCE, 2021, "CN-Shenzhen", "electric bus"),
    Factor("transit.bicycle", "48.7", "gCO2e/pkm", MT_SOURCE, None, "CN",
           "conservative: only a minority of rides replace car trips"),
    Factor("transit.walk", "48.7", "gCO2e/pkm", "bicycle value reused; no official per-km factor found", None, "CN",
           "capped per day"),
    Factor("transit.ebike", "0", "gCO2e/pkm", "e-bikes emit themselves (Meituan reports 61.8 g/km)", None, "CN",
           "0 by default; an operator may configure a value"),
)
FACTOR_OF = {m.value: f"transit.{m.value.lower()}" for m in TransitMode}


class TransitActionType(ActionType[TransitInput, TransitSettings]):
    code = "transit"
    name_zh = "绿色出行"
    name_en = "Low-carbon trip"
    version = "1.0.0"
    description = "A walk, bicycle, e-bike, bus or metro trip instead of a car. / 以步行、骑行、公交、地铁代替开车。"
    graphql_input_name = "TransitActionInput"

    def base_methodology(self) -> Methodology:
        return Methodology(
            title="Low-carbon trips (ER = BE − PE per passenger-km) / 绿色出行减排",
            reference="Shenzhen low-carbon public transport carbon-inclusion methodology (trial, 2021); "
            "DB11/T 3043-2024; T/ACEF 106-2023 (bus), T/ACEF 107-2023 (metro)",
            text="Reduction = distance (km) × factor of the mode (g CO2e avoided per passenger-km against the "
            "baseline traffic mix), rounded down to whole grams. Trips must be plausible for the mode (average "
            "speed, distance), end after they start, not be in the future or older than the claim window, and "
            "not overlap the member's other trips. Walking is capped per day. Partner-signed trips are approved "
            "directly; unsigned trips above a threshold are reviewed.",
            factors=FACTORS,
        )

    def period(self, input: TransitInput) -> tuple[datetime, datetime]:
        return input.started_at, input.ended_at

    def evidence_fingerprint(self, input: TransitInput, evidence: Evidence) -> str | None:
        if input.partner_trip_id is None:
            return None
        return f"{evidence.source or '-'}:{input.partner_trip_id}"

    def signed_record(self, input: TransitInput, evidence: Evidence) -> dict[str, Any]:
        return {
            "partner": evidence.source,
            "trip_id": input.partner_trip_id,
            "mode": input.mode.value,
            "started_at": input.started_at.isoformat(),
            "ended_at": input.ended_at.isoformat(),
            "distance_meters": input.distance_meters,
        }

    def raw_grams(self, input: TransitInput, ctx: PluginContext[TransitSettings]) -> tuple[int, Factor]:
        factor = self.methodology(ctx.settings).factor(FACTOR_OF[input.mode.value])
        return grams_from(input.distance_meters, factor, scale="0.001"), factor

    async def verify(
        self, input: TransitInput, evidence: Evidence, ctx: PluginContext[TransitSettings]
    ) -> Verification:
        s = ctx.settings
        mode = input.mode
        duration = (input.ended_at - input.started_at).total_seconds()
        if duration < s.min_duration_seconds:
            return Verification.rejected(
                ("DURATION_TOO_SHORT", f"A trip must last at least {s.min_duration_seconds} s / 行程时间过短")
            )
        if input.distance_meters < s.min_distance_meters:
            return Verification.rejected(
                ("DISTANCE_TOO_SHORT", f"A trip must be at least {s.min_distance_meters} m / 行程距离过短")
            )
        max_dist = s.max_distance_meters.get(mode, DEFAULT_MAX_DISTANCE_M[mode])
        if input.distance_meters > max_dist:
            return Verification.rejected(
                ("DISTANCE_IMPLAUSIBLE", f"{mode.value} trips are at most {max_dist} m / 距离超出该方式的合理范围")
            )
        speed = input.distance_meters / 1000 / (duration / 3600)
        max_speed = s.max_speed_kmh.get(mode, DEFAULT_MAX_SPEED_KMH[mode])
        if speed > max_speed:
            return Verification.rejected(
                ("SPEED_IMPLAUSIBLE",
                 f"Average speed {speed:.1f} km/h exceeds {max_speed:g} km/h for {mode.value} / 平均速度不合理")
            )
        if await ctx.my_actions(input.started_at, input.ended_at):
            return Verification.rejected(("TRIP_OVERLAP", "This trip overlaps another of your trips / 与您的其他行程时间重叠"))
        used = 0
        cap = s.mode_daily_cap_grams.get(mode)
        if cap is not None:
            day_start, day_end = ctx.local_day(input.started_at)
            for record in await ctx.my_actions(day_start, day_end, statuses=(Status.APPROVED,)):
                if record.input.get("mode") == mode.value and day_start <= record.occurred_from < day_end:
                    used += record.grams_co2e
            if used >= cap:
                return Verification.rejected(
                    ("MODE_DAILY_CAP_REACHED", f"Daily limit of {cap} g for {mode.value} reached / 今日该方式已达上限")
                )
        data = {"mode_used_today_grams": used}
        if input.gps_trace is not None:
            trace = input.gps_trace.distance_meters
            if abs(trace - input.distance_meters) > max(200, input.distance_meters // 4):
                return Verification.needs_review(
                    ("GPS_MISMATCH", f"GPS trace ({trace} m) does not match the distance / GPS 轨迹与距离不符"), data=data
                )
        if evidence.signature is not None:
            secret = s.partners.get(evidence.source or "")
            if secret is None:
                return Verification.rejected(("SIGNATURE_INVALID", "Unknown partner for this signature / 未知合作方"))
            problem = check_signature(
                secret=secret, record=self.signed_record(input, evidence), signature=evidence.signature,
                signed_at=evidence.signed_at, now=ctx.now, max_age=timedelta(minutes=s.signature_max_age_minutes),
            )
            if problem is not None:
                return Verification.rejected(problem)
            return Verification.approved(data={**data, "signed": True})
        grams, _ = self.raw_grams(input, ctx)
        if cap is not None:
            grams = min(grams, cap - used)
        if grams > s.review_above_grams:
            return Verification.needs_review(
                ("UNSIGNED_HIGH_VALUE", f"Unsigned trip worth more than {s.review_above_grams} g needs review / 无签名的大额行程需审核"),
                data=data,
            )
        return Verification.approved(data=data)

    def calculate(
        self, input: TransitInput, verification: Verification, ctx: PluginContext[TransitSettings]
    ) -> Calculation:
        s = ctx.settings
        grams, factor = self.raw_grams(input, ctx)
        km = f"{input.distance_meters / 1000:g}"
        formula = f"{km} km × {factor.value} g/pkm ({factor.id}) = {grams} g"
        cap = s.mode_daily_cap_grams.get(input.mode)
        if cap is not None:
            room = max(0, cap - int(verification.data.get("mode_used_today_grams", 0)))
            if grams > room:
                formula += f"; capped to {room} g by the {input.mode.value} daily limit of {cap} g"
                grams = room
        return Calculation(
            grams_co2e=grams, factors=(factor,), formula=formula,
            cap_group=f"mode:{input.mode.value}" if cap is not None else None, cap_group_daily_grams=cap,
        )


@hookimpl
def jingtan_register_action_types() -> list[ActionType[Any, Any]]:
    return [TransitActionType()]
