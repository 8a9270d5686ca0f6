"""The public plugin API: everything an action plugin may import (docs/architecture.md, section "Plugins").

A plugin is a module (or object) registered through the ``jingtan.plugins`` entry-point group that
implements :func:`jingtan_register_action_types` with the :data:`hookimpl` marker and returns
:class:`ActionType` instances. The core validates the plugin's settings, builds a GraphQL input from its
pydantic ``Input`` model, calls ``verify`` (async, with a timeout) and ``calculate`` (pure), applies caps,
stores the action and credits points on the ledger. Plugins never touch the database or the ledger.

The API is typed: ``class Refill(ActionType[RefillInput, RefillSettings])`` gets ``verify(self, input:
RefillInput, evidence: Evidence, ctx: PluginContext[RefillSettings])`` with ``ctx.settings`` typed as
``RefillSettings``; ``Input`` and ``Settings`` are taken from the two type arguments (since plugin API 1.1).

Versioning: :data:`PLUGIN_API_VERSION` is ``MAJOR.MINOR``. A plugin states the version it was written
against in ``ActionType.plugin_api_version``; it loads when the major versions are equal and its minor is
not newer than the host's. Additions bump the minor; removals or changed meanings bump the major.
"""

import hashlib
import hmac
import json
import logging
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from enum import Enum
from typing import Any, ClassVar, Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo

import pluggy
from pydantic import BaseModel, ConfigDict, Field

PLUGIN_API_VERSION = "1.2"
PROJECT_NAME = "jingtan"
ENTRY_POINT_GROUP = "jingtan.plugins"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marker for plugin hook implementations: ``@hookimpl def jingtan_register_action_types(): ...``."""


class Status(str, Enum):
    """Outcome of verification and final status of an action."""

    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    NEEDS_REVIEW = "NEEDS_REVIEW"


@dataclass(frozen=True)
class Reason:
    """Why an action was rejected or sent to review: a stable ``code`` and a zh/en ``message``."""

    code: str
    message: str


def _reasons(items: Sequence["Reason | tuple[str, str]"]) -> tuple[Reason, ...]:
    return tuple(r if isinstance(r, Reason) else Reason(*r) for r in items)


@dataclass(frozen=True)
class Verification:
    """Result of ``ActionType.verify``. Build it with :meth:`approved`, :meth:`rejected` or
    :meth:`needs_review`. ``data`` carries facts found during verification (e.g. what the member already
    earned today) to ``calculate``, which must stay pure."""

    status: Status
    reasons: tuple[Reason, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def approved(cls, *, data: dict[str, Any] | None = None, reasons: Sequence[Reason] = ()) -> "Verification":
        return cls(Status.APPROVED, _reasons(reasons), dict(data or {}))

    @classmethod
    def rejected(cls, *reasons: "Reason | tuple[str, str]", data: dict[str, Any] | None = None) -> "Verification":
        if not reasons:
            raise ValueError("a rejection needs at least one reason")
        return cls(Status.REJECTED, _reasons(reasons), dict(data or {}))

    @classmethod
    def needs_review(cls, *reasons: "Reason | tuple[str, str]", data: dict[str, Any] | None = None) -> "Verification":
        if not reasons:
            raise ValueError("sending to review needs at least one reason")
        return cls(Status.NEEDS_REVIEW, _reasons(reasons), dict(data or {}))


@dataclass(frozen=True, init=False)
class Factor:
    """One emission factor: data, shown through the API and recorded on each action that used it.
    ``value`` may be given as a decimal string (``"46.7"``), an int or a Decimal; it is stored as a Decimal."""

    id: str
    value: Decimal
    unit: str
    source: str
    year: int | None = None
    region: str | None = None
    note: str = ""

    def __init__(
        self,
        id: str,
        value: Decimal | str | int | float,
        unit: str,
        source: str,
        year: int | None = None,
        region: str | None = None,
        note: str = "",
    ) -> None:
        set_ = object.__setattr__  # the dataclass is frozen
        set_(self, "id", id)
        set_(self, "value", Decimal(str(value)))
        set_(self, "unit", unit)
        set_(self, "source", source)
        set_(self, "year", year)
        set_(self, "region", region)
        set_(self, "note", note)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "value": str(self.value),
            "unit": self.unit,
            "source": self.source,
            "year": self.year,
            "region": self.region,
            "note": self.note,
        }


class FactorOverride(BaseModel):
    """Replace a factor's value (and optionally its source) in ``[plugins.<code>.factors.<id>]``."""

    model_config = ConfigDict(extra="forbid")
    value: Decimal = Field(ge=0, allow_inf_nan=False, description="New value, in the factor's unit.")
    source: str | None = Field(None, description="Where the new value comes from.")
    year: int | None = Field(None, description="Reference year of the new value.")
    note: str | None = None


@dataclass(frozen=True)
class Methodology:
    """How a category computes CO2e: title, reference (standard / document), explanation, factors."""

    title: str
    reference: str
    text: str
    factors: tuple[Factor, ...] = ()

    def factor(self, factor_id: str) -> Factor:
        for f in self.factors:
            if f.id == factor_id:
                return f
        raise KeyError(factor_id)


@dataclass(frozen=True)
class Calculation:
    """Result of ``ActionType.calculate``: integer grams CO2e avoided, the factors used and the formula
    in words and numbers. Points are not part of it: the core computes them from the credited grams and
    its configured rate, after caps."""

    grams_co2e: int
    factors: tuple[Factor, ...]
    formula: str
    cap_group: str | None = None
    """Optional sub-limit inside the category (e.g. ``"mode:WALK"``): the core credits at most
    ``cap_group_daily_grams`` per member and local day for the group, atomically with the credit."""
    cap_group_daily_grams: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.grams_co2e, bool) or not isinstance(self.grams_co2e, int) or self.grams_co2e < 0:
            raise ValueError("grams_co2e must be a non-negative int")

    @property
    def factor_ids(self) -> list[str]:
        return [f.id for f in self.factors]


@dataclass(frozen=True)
class Caps:
    """Per-member limits of one category (None = no limit). Days and months are local to the platform's
    time zone and count by when the action happened."""

    daily_grams: int | None = None
    monthly_grams: int | None = None
    daily_points: int | None = None
    monthly_points: int | None = None
    platform_daily_grams: int | None = None
    """Budget of the whole category per day, all members together."""
    per_household: bool = False
    """Since plugin API 1.2: the daily and monthly limits count the submitter's household's actions of the
    category together (members outside a household: their own), for things a household shares (its
    electricity meters)."""


@dataclass(frozen=True)
class Evidence:
    """What the member (or a partner app) sends along: where the record comes from, its id there, an
    optional signature (and when it was made), attachment URLs."""

    source: str | None = None
    external_id: str | None = None
    signature: str | None = None
    signed_at: datetime | None = None
    attachments: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "external_id": self.external_id,
            "signature": self.signature,
            "signed_at": self.signed_at.isoformat() if self.signed_at else None,
            "attachments": list(self.attachments),
        }


@dataclass(frozen=True)
class ActionRecord:
    """A stored action of the plugin's own category, as history queries return it."""

    id: int
    member_id: int
    status: Status
    input: dict[str, Any]
    occurred_from: datetime
    occurred_to: datetime
    subject: str | None
    grams_co2e: int
    points: int
    created_at: datetime
    household_id: int | None = None
    """The submitter's household when the action was submitted (None: none). Since plugin API 1.2."""

    @property
    def scope(self) -> str:
        """Whose claim this was: ``"household:<id>"`` when submitted from a household, else
        ``"member:<id>"`` (compare with :attr:`PluginContext.scope`). Since plugin API 1.2."""
        return scope_key(self.member_id, self.household_id)


def scope_key(member_id: int, household_id: int | None) -> str:
    """The claim scope of a member in a household (or alone): ``"household:<id>"`` / ``"member:<id>"``.
    Since plugin API 1.2."""
    return f"household:{household_id}" if household_id is not None else f"member:{member_id}"


class ActionSettings(BaseModel):
    """Base of a plugin's settings model (``[plugins.<code>]``). Unknown keys are refused; defaults are
    validated like configured values (so enum-keyed defaults become enums)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    daily_cap_grams: int | None = Field(None, ge=0, description="Most grams CO2e credited per member per day.")
    monthly_cap_grams: int | None = Field(None, ge=0, description="Most grams CO2e credited per member per month.")
    daily_cap_points: int | None = Field(None, ge=0, description="Most points credited per member per day.")
    monthly_cap_points: int | None = Field(None, ge=0, description="Most points per member per month.")
    platform_daily_cap_grams: int | None = Field(
        None, ge=0, description="Most grams CO2e credited per day for this category, all members together."
    )
    factors: dict[str, FactorOverride] = Field(
        default_factory=dict, description="Factor overrides by factor id (value, source, year, note)."
    )


class ActionInput(BaseModel):
    """Base of a plugin's input model: unknown fields are refused, NaN/inf are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


InputT = TypeVar("InputT", bound=ActionInput)
"""The pydantic input model of an action type (a subclass of :class:`ActionInput`)."""
SettingsT = TypeVar("SettingsT", bound=ActionSettings)
"""The pydantic settings model of an action type (a subclass of :class:`ActionSettings`)."""


class HistorySource(Protocol):
    """What :class:`PluginContext` reads history from: the core passes one backed by the database, tests
    a :class:`jingtan_api.plugins.testing.FakeHistory`. Structural: any object with these three methods
    fits, no base class needed. ``statuses`` are the statuses to include; each list is oldest first."""

    async def member_actions(
        self, code: str, member_id: int, start: datetime | None, end: datetime | None, statuses: Sequence[Status]
    ) -> list[ActionRecord]:
        """Actions of category ``code`` by ``member_id`` whose span overlaps [start, end) (None = open)."""
        ...

    async def subject_actions(self, code: str, subject: str, statuses: Sequence[Status]) -> list[ActionRecord]:
        """Actions of category ``code`` (any member) about ``subject``."""
        ...

    async def evidence_seen(self, code: str, fingerprint: str) -> bool:
        """Whether an action of category ``code`` already used this evidence fingerprint."""
        ...


class PluginContext(Generic[SettingsT]):
    """What a plugin sees during one submission: the member, the clock, read-only history of its own
    category, its validated settings (typed: ``PluginContext[MySettings].settings`` is a ``MySettings``)
    and a logger. Built by the core; tests use :func:`jingtan_api.plugins.testing.make_context`."""

    def __init__(
        self,
        *,
        code: str,
        member_id: int,
        now: datetime,
        settings: SettingsT,
        timezone: ZoneInfo,
        claim_window: timedelta,
        grams_per_point: int,
        history: HistorySource,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
        household_id: int | None = None,
    ) -> None:
        self.code = code
        self.member_id = member_id
        self.household_id = household_id
        """The submitting member's household (None: none); since plugin API 1.2. Things that belong to a
        household rather than a person (an electricity meter) compare :attr:`scope` with
        :attr:`ActionRecord.scope`."""
        self.now = now
        self.settings: SettingsT = settings
        self.timezone = timezone
        self.claim_window = claim_window
        self.grams_per_point = grams_per_point
        self._history = history
        self.log: logging.Logger | logging.LoggerAdapter[logging.Logger] = (
            logger or logging.getLogger(f"jingtan.plugins.{code}")
        )

    @property
    def scope(self) -> str:
        """Whose claim this submission is: ``"household:<id>"`` for a member of a household, else
        ``"member:<id>"``. Since plugin API 1.2."""
        return scope_key(self.member_id, self.household_id)

    def same_scope(self, record: ActionRecord) -> bool:
        """Whether ``record`` was claimed by this submitter's scope (the same household, or the same
        member outside households). Since plugin API 1.2."""
        return record.scope == self.scope

    async def my_actions(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        statuses: Sequence[Status] = (Status.APPROVED, Status.NEEDS_REVIEW),
    ) -> list[ActionRecord]:
        """This member's actions of this category whose time span overlaps [start, end)."""
        return await self._history.member_actions(self.code, self.member_id, start, end, tuple(statuses))

    async def subject_actions(
        self, subject: str, *, statuses: Sequence[Status] = (Status.APPROVED, Status.NEEDS_REVIEW)
    ) -> list[ActionRecord]:
        """Actions of this category (any member) about one subject (a meter, a station, …), oldest first."""
        return await self._history.subject_actions(self.code, subject, tuple(statuses))

    async def evidence_seen(self, fingerprint: str) -> bool:
        """True when an approved or pending action of this category already used this evidence."""
        return await self._history.evidence_seen(self.code, fingerprint)

    def local_day(self, moment: datetime) -> tuple[datetime, datetime]:
        """[start, end) of the platform-local day containing ``moment``, as aware datetimes."""
        local = moment.astimezone(self.timezone)
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)

    def points_for(self, grams: int) -> int:
        """The points ``grams`` earn at the core's rate, before caps (for messages: the core credits)."""
        return grams // self.grams_per_point


_MODEL_BASES: dict[str, type[BaseModel]] = {"Input": ActionInput, "Settings": ActionSettings}


class ActionType(Generic[InputT, SettingsT]):
    """Base class of an action category, generic over its input and settings models:
    ``class Refill(ActionType[RefillInput, RefillSettings])``. Subclasses set the class attributes and
    implement :meth:`verify`, :meth:`calculate`, :meth:`period` and (usually) :meth:`evidence_fingerprint`.

    ``Input`` and ``Settings`` are taken from the type arguments. Plugins written against API 1.0 subclass
    the bare ``ActionType`` and set ``Input = ...`` / ``Settings = ...`` themselves; that still works. Setting
    them next to type arguments is allowed when they are the same models (or subclasses of them)."""

    code: ClassVar[str]
    """snake_case, unique; the field name of ``ActionInput`` is its camelCase."""
    name_zh: ClassVar[str]
    name_en: ClassVar[str]
    version: ClassVar[str] = "1.0.0"
    """Version of the rules; recorded on every action."""
    plugin_api_version: ClassVar[str] = PLUGIN_API_VERSION
    description: ClassVar[str] = ""
    """What counts as this action, shown as ``actionTypes { description }`` (write zh + en)."""
    Input: type[InputT]
    """The pydantic input model (a subclass of :class:`ActionInput`): the first type argument."""
    Settings: type[SettingsT]
    """The pydantic settings model of ``[plugins.<code>]``: the second type argument (default
    :class:`ActionSettings`)."""
    graphql_input_name: ClassVar[str | None] = None
    """Name of the GraphQL input type (default: PascalCase of the code + ``ActionInput``)."""
    default_caps: ClassVar[Caps] = Caps()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        models = _models_of_type_arguments(cls)
        if "Settings" not in models and not hasattr(cls, "Settings"):
            models["Settings"] = ActionSettings  # the default of plugin API 1.0
        for attr, model in models.items():
            explicit = cls.__dict__.get(attr)
            if explicit is None:
                setattr(cls, attr, model)
            elif not (isinstance(explicit, type) and issubclass(explicit, model)):
                raise TypeError(
                    f"{cls.__qualname__}.{attr} = {explicit!r} does not match its type argument {model.__qualname__}"
                )

    # --- declared data ---------------------------------------------------------------------------

    def base_methodology(self) -> Methodology:
        raise NotImplementedError

    def methodology(self, settings: SettingsT) -> Methodology:
        """The methodology with factor overrides from settings applied."""
        base = self.base_methodology()
        overrides = getattr(settings, "factors", {}) or {}
        factors: list[Factor] = []
        for f in base.factors:
            o = overrides.get(f.id)
            if o is not None:
                f = Factor(
                    id=f.id,
                    value=o.value,
                    unit=f.unit,
                    source=o.source or f"{f.source} (value overridden by operator configuration)",
                    year=o.year if o.year is not None else (None if o.source else f.year),
                    region=f.region,
                    note=o.note if o.note is not None else f.note,
                )
            factors.append(f)
        return Methodology(base.title, base.reference, base.text, tuple(factors))

    def caps(self, settings: SettingsT) -> Caps:
        d = self.default_caps

        def pick(name: str, default: int | None) -> int | None:
            value = getattr(settings, name, None)
            return default if value is None else value

        return Caps(
            daily_grams=pick("daily_cap_grams", d.daily_grams),
            monthly_grams=pick("monthly_cap_grams", d.monthly_grams),
            daily_points=pick("daily_cap_points", d.daily_points),
            monthly_points=pick("monthly_cap_points", d.monthly_points),
            platform_daily_grams=pick("platform_daily_cap_grams", d.platform_daily_grams),
            per_household=d.per_household,
        )

    def claim_window_days(self, settings: SettingsT) -> int | None:
        """Days after an action ends during which it may be claimed; None = the core default
        (``[actions] claim_window_days``). Since plugin API 1.0."""
        return getattr(settings, "claim_window_days", None)

    def validate_settings(self, settings: SettingsT) -> None:
        """Cross-field checks of settings beyond the model (raise ValueError with a clear message)."""
        base = {f.id for f in self.base_methodology().factors}
        unknown = set(getattr(settings, "factors", {}) or {}) - base
        if unknown:
            raise ValueError(f"unknown factor id(s) {sorted(unknown)}; known: {sorted(base)}")

    # --- per submission ----------------------------------------------------------------------------

    def period(self, input: InputT) -> tuple[datetime, datetime]:
        """When the action happened: [start, end] (aware datetimes). Used for the claim window, caps
        and history queries."""
        raise NotImplementedError

    def subject(self, input: InputT) -> str | None:
        """What the action is about across members (a meter id, …), for ``subject_actions``."""
        return None

    def evidence_fingerprint(self, input: InputT, evidence: Evidence) -> str | None:
        """A stable string identifying the real-world evidence (e.g. station + receipt id). The core
        refuses a second action of this category with the same fingerprint (a database constraint)."""
        return None

    async def verify(self, input: InputT, evidence: Evidence, ctx: PluginContext[SettingsT]) -> Verification:
        """Check the submission: approved, rejected (stored, with reasons) or sent to review."""
        raise NotImplementedError

    def calculate(self, input: InputT, verification: Verification, ctx: PluginContext[SettingsT]) -> Calculation:
        """The grams CO2e avoided (pure: no history, no clock beyond ``ctx.now``; use ``verification.data``)."""
        raise NotImplementedError


def _models_of_type_arguments(cls: type) -> dict[str, type[BaseModel]]:
    """``{"Input": ..., "Settings": ...}`` from the concrete type arguments of ``cls``'s own bases that are
    :class:`ActionType` classes (``ActionType[I, S]``, or ``MyBase[I]`` of a generic subclass)."""
    found: dict[str, type[BaseModel]] = {}
    for base in cls.__dict__.get("__orig_bases__", ()):
        origin = typing.get_origin(base)
        if not (isinstance(origin, type) and issubclass(origin, ActionType)):
            continue
        for arg in typing.get_args(base):
            for attr, model_base in _MODEL_BASES.items():
                if isinstance(arg, type) and issubclass(arg, model_base):
                    found[attr] = arg
    return found


# --- helpers for plugins ---------------------------------------------------------------------------


def grams_from(quantity: Decimal | int, factor: Factor, *, scale: Decimal | int | str = 1) -> int:
    """floor(quantity × factor.value × scale) as int grams — exact decimal arithmetic, no floats."""
    value = Decimal(quantity) * factor.value * Decimal(scale)
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def canonical_json(record: dict[str, Any]) -> str:
    """The canonical form partners sign: JSON, keys sorted, no spaces, UTF-8."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def hmac_sha256_hex(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def check_signature(
    *,
    secret: str,
    record: dict[str, Any],
    signature: str | None,
    signed_at: datetime | None,
    now: datetime,
    max_age: timedelta,
) -> Reason | None:
    """Verify an HMAC-SHA256 signature over ``canonical_json({**record, "signed_at": iso})``.
    Returns None when valid, otherwise the reason (SIGNATURE_INVALID / SIGNATURE_STALE)."""
    if not signature or signed_at is None:
        return Reason("SIGNATURE_INVALID", "Signature or signing time missing / 缺少签名或签名时间")
    message = canonical_json({**record, "signed_at": signed_at.isoformat()})
    if not hmac.compare_digest(hmac_sha256_hex(secret, message), signature.lower()):
        return Reason("SIGNATURE_INVALID", "Signature does not match / 签名无效")
    if signed_at > now + timedelta(minutes=5) or now - signed_at > max_age:
        return Reason("SIGNATURE_STALE", "Signature is too old or from the future / 签名已过期")
    return None


def sign_record(secret: str, record: dict[str, Any], signed_at: datetime) -> str:
    """What a partner computes (also used in tests)."""
    return hmac_sha256_hex(secret, canonical_json({**record, "signed_at": signed_at.isoformat()}))


__all__ = [
    "ENTRY_POINT_GROUP",
    "PLUGIN_API_VERSION",
    "ActionInput",
    "ActionRecord",
    "ActionSettings",
    "ActionType",
    "Calculation",
    "Caps",
    "Evidence",
    "Factor",
    "FactorOverride",
    "HistorySource",
    "InputT",
    "Methodology",
    "PluginContext",
    "Reason",
    "SettingsT",
    "Status",
    "Verification",
    "canonical_json",
    "check_signature",
    "grams_from",
    "hmac_sha256_hex",
    "hookimpl",
    "scope_key",
    "sign_record",
]
