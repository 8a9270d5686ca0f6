"""Rules of action submission and review (no GraphQL here).

Flow of a submission (``submit``):
1. input validated by the plugin's pydantic model and evidence checked (errors -> ValidationFailed,
   nothing stored);
2. one read: idempotency pre-check (a replay returns the first result without calling the plugin again;
   the same key with another input -> IdempotencyConflict) and whether the evidence was already used;
3. core checks: future timestamps and end before start (errors); claim window and evidence already used
   (stored as REJECTED, the member sees why);
4. ``verify`` (async, under ``plugins.timeout_seconds``) and ``calculate`` (pure); a plugin exception or
   timeout -> PluginFailure, nothing stored;
5. ONE write transaction: claim the idempotency key, lock the member's account row, apply the category's
   caps and the plugin's cap group, then the core's per-member caps across all types
   (``[actions] member_daily_cap_points`` / ``member_monthly_cap_points``: credited up to the cap, CAPPED /
   CAP_REACHED) and its review threshold (``review_above_points``: more -> NEEDS_REVIEW,
   ABOVE_REVIEW_THRESHOLD) — applied whatever the plugin returned, insert the action (``ON CONFLICT DO NOTHING`` on (plugin,
   fingerprint): a concurrent twin becomes a REJECTED duplicate), credit points via ``post_transaction``
   when approved (ACTION_CREDIT, issuance -> member);
6. methodology governance: with ``[methodologies] require_methodology_approval`` an action that would be
   APPROVED while its methodology version is not is stored as PENDING_METHODOLOGY, nothing credited;
   ``credit_waiting`` credits such actions once an expert approves the version (docs/methodology.md).
"""

import asyncio
import base64
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy import and_, bindparam, case, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api import events
from jingtan_api.accounts import idempotency
from jingtan_api.accounts import service as ledger
from jingtan_api.accounts.models import Account
from jingtan_api.actions.models import Action
from jingtan_api.audit import service as audit
from jingtan_api.db import Database, Page, PageArgs, StatementCache, dialect_insert_for, keyset_page, run_batched
from jingtan_api.driver import DriverStatement, column_binds, in_list
from jingtan_api.users import service as users
from jingtan_api.errors import Conflict, DomainError, IdempotencyConflict, NotFound, ValidationFailed
from jingtan_api.observability import metrics
from jingtan_api.households import service as households
from jingtan_api.methodologies import service as methodologies
from jingtan_api.plugins.api import (
    ActionRecord,
    Calculation,
    Caps,
    Evidence,
    HistorySource,
    PluginContext,
    Reason,
    Status,
    Verification,
)
from jingtan_api.plugins.manager import LoadedActionType, camel
from jingtan_api.settings import Settings

if TYPE_CHECKING:
    from jingtan_api.services import Services

log = logging.getLogger("jingtan.actions")

T = Action.__table__
A = Account.__table__
ACTION_CREDIT = "ACTION_CREDIT"
APPROVED, REJECTED, NEEDS_REVIEW = Status.APPROVED.value, Status.REJECTED.value, Status.NEEDS_REVIEW.value
# Verified (the plugin and the core's checks approved it) but its methodology version is not approved yet:
# nothing credited; credited by ``credit_waiting`` when an expert approves the version (docs/methodology.md).
PENDING_METHODOLOGY = "PENDING_METHODOLOGY"
_WAITING_REASON = Reason(
    "METHODOLOGY_PENDING",
    "Verified; points are credited once the expert committee approves this methodology version "
    "/ 已核验，方法学版本经专家委员会批准后发放积分",
)
MAX_EVIDENCE_TEXT = 500
MAX_ATTACHMENTS = 10


class PluginFailure(DomainError):
    """The plugin raised or timed out; nothing was stored or credited."""

    code = "PLUGIN_FAILURE"


class InvalidActionInput(ValidationFailed):
    """The input does not satisfy the plugin's input model; ``problems`` lists (field path, message)."""

    def __init__(self, problems: list[tuple[list[str], str]]) -> None:
        super().__init__("; ".join(m for _, m in problems) or "Invalid input / 输入无效")
        self.input_problems = problems

    def problems(self) -> list[tuple[str, str, list[str] | None]]:
        return [(m, self.code, ["input", *path]) for path, m in self.input_problems]


@dataclass(frozen=True)
class SubmitResult:
    action_id: int
    replayed: bool
    # The new action's row as stored (every column, as ``actions_by_ids`` reads it), returned by its INSERT:
    # the payload needs no read of its own. None for a replay or a row written by the fallback path.
    row: dict[str, Any] | None = None


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))


def _record(row: Any) -> ActionRecord:
    m = row._mapping if hasattr(row, "_mapping") else row
    return ActionRecord(
        id=m["id"],
        member_id=m["user_id"],
        status=Status(APPROVED if m["status"] == PENDING_METHODOLOGY else m["status"]),
        input=json.loads(m["input"]),
        occurred_from=m["occurred_from"],
        occurred_to=m["occurred_to"],
        subject=m["subject"],
        grams_co2e=m["grams_co2e"],
        points=m["points"],
        created_at=m["created_at"],
        household_id=m.get("household_id"),
    )


_HISTORY = StatementCache()


def _member_history(start: datetime | None, end: datetime | None) -> DriverStatement:
    q = select(T).where(T.c.user_id == bindparam("user_id"), T.c.plugin_code == bindparam("code"),
                        in_list(T.c.status, "statuses"))
    if start is not None:
        q = q.where(T.c.occurred_to > bindparam("start", type_=T.c.occurred_to.type))
    if end is not None:
        q = q.where(T.c.occurred_from < bindparam("end", type_=T.c.occurred_from.type))
    return DriverStatement(q.order_by(T.c.occurred_from, T.c.id).limit(1000))


_SUBJECT_HISTORY = DriverStatement(
    select(T).where(T.c.plugin_code == bindparam("code"), T.c.subject == bindparam("subject"), in_list(T.c.status, "statuses"))
    .order_by(T.c.occurred_from, T.c.id).limit(1000))


class DatabaseHistory:
    """Read-only history for plugins, each query in its own short read transaction (a
    :class:`HistorySource`, structurally)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def _statuses(statuses: Sequence[Status]) -> list[str]:
        """An action waiting for its methodology's approval was approved by the plugin: it counts (and is
        reported) as APPROVED in the plugin's history."""
        values = [s.value for s in statuses]
        return [*values, PENDING_METHODOLOGY] if APPROVED in values else values

    async def member_actions(
        self, code: str, member_id: int, start: datetime | None, end: datetime | None, statuses: Sequence[Status]
    ) -> list[ActionRecord]:
        # On the driver path (the transit plugin asks this on every submission), one statement per
        # combination of bounds given.
        stmt = _HISTORY.get(("member", start is not None, end is not None), lambda: _member_history(start, end))
        params = {"user_id": member_id, "code": code, "statuses": self._statuses(statuses), "start": start, "end": end}
        async with self.db.read() as conn:
            rows = await stmt.all(conn, params)
        return [_record(r) for r in rows]

    async def subject_actions(self, code: str, subject: str, statuses: Sequence[Status]) -> list[ActionRecord]:
        params = {"code": code, "subject": subject, "statuses": self._statuses(statuses)}
        async with self.db.read() as conn:
            rows = await _SUBJECT_HISTORY.all(conn, params)
        return [_record(r) for r in rows]

    async def evidence_seen(self, code: str, fingerprint: str) -> bool:
        async with self.db.read() as conn:
            found = (
                await conn.execute(
                    select(T.c.id).where(T.c.plugin_code == code, T.c.evidence_fingerprint == fingerprint).limit(1)
                )
            ).first()
        return found is not None


def make_context(
    loaded: LoadedActionType, settings: Settings, db: Database, member_id: int, now: datetime,
    household_id: int | None = None,
) -> PluginContext:
    window = loaded.action_type.claim_window_days(loaded.settings) or settings.actions.claim_window_days
    history: HistorySource = DatabaseHistory(db)
    return PluginContext(
        code=loaded.code,
        member_id=member_id,
        now=now,
        settings=loaded.settings,
        timezone=ZoneInfo(settings.actions.timezone),
        claim_window=timedelta(days=window),
        grams_per_point=settings.points.grams_per_point,
        history=history,
        logger=logging.getLogger(f"jingtan.plugins.{loaded.code}"),
        household_id=household_id,
    )


def parse_evidence(raw: dict | None) -> Evidence:
    raw = raw or {}
    for key in ("source", "external_id", "signature"):
        value = raw.get(key)
        if value is not None and (len(value) > MAX_EVIDENCE_TEXT or not value.isprintable()):
            raise ValidationFailed(
                f"evidence.{camel(key)} must be at most {MAX_EVIDENCE_TEXT} printable characters / 凭证字段无效",
                field=f"evidence.{camel(key)}",
            )
    attachments = tuple(raw.get("attachments") or ())
    if len(attachments) > MAX_ATTACHMENTS or any(
        len(a) > MAX_EVIDENCE_TEXT or not a.startswith(("https://", "http://")) for a in attachments
    ):
        raise ValidationFailed(
            f"evidence.attachments: at most {MAX_ATTACHMENTS} http(s) URLs / 附件须为 URL", field="evidence.attachments"
        )
    signed_at = raw.get("signed_at")
    if signed_at is not None and signed_at.tzinfo is None:
        raise ValidationFailed("evidence.signedAt needs a time zone / 签名时间须带时区", field="evidence.signedAt")
    return Evidence(
        source=raw.get("source"),
        external_id=raw.get("external_id"),
        signature=raw.get("signature"),
        signed_at=signed_at,
        attachments=attachments,
    )


def validate_input(loaded: LoadedActionType, raw: dict) -> Any:
    try:
        return loaded.action_type.Input.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = ["action", loaded.field_name, *(camel(str(p)) for p in err["loc"])]
            problems.append((path, f"{'.'.join(path[1:])}: {err['msg']} / 输入无效"))
        raise InvalidActionInput(problems) from None


_key_row = (idempotency.T.c.scope == bindparam("scope"), idempotency.T.c.key == bindparam("key"))
_PRECHECK = DriverStatement(select(
    households.household_of_expression(bindparam("uid")).label("household_id"),
    select(idempotency.T.c.request_hash).where(*_key_row).scalar_subquery().label("seen_hash"),
    select(idempotency.T.c.result_id).where(*_key_row).scalar_subquery().label("seen_result"),
    exists().where(T.c.plugin_code == bindparam("code"),
                   T.c.evidence_fingerprint == bindparam("fingerprint", type_=T.c.evidence_fingerprint.type))
    .label("evidence_used"),
))


async def _precheck(
    db: Database, scope: str, key: str, code: str, fingerprint: str | None, user_id: int, *, verified_contact: bool,
) -> tuple[tuple[str, int | None] | None, bool, int | None]:
    """(the key's earlier request hash and result, whether the evidence was used, the member's household),
    in one read transaction, which also checks the identity gate when ``verified_contact`` is required."""
    async with db.read() as conn:
        if verified_contact:
            await users.require_verified_contact(conn, user_id)
        # One statement for the three lookups (the household, the key, the evidence).
        found = (await _PRECHECK.all(conn, {"uid": user_id, "scope": scope, "key": key, "code": code,
                                            "fingerprint": fingerprint}))[0]
    seen = (found["seen_hash"], found["seen_result"]) if found["seen_hash"] is not None else None
    used = fingerprint is not None and seen is None and bool(found["evidence_used"])
    return seen, used, found["household_id"]


def _window_bounds(moment: datetime, tz: ZoneInfo, monthly: bool) -> tuple[datetime, datetime]:
    local = moment.astimezone(tz)
    if monthly:
        start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=1)
    return start, end


_GRAMS_USED = StatementCache()


async def _grams_used(conn: AsyncConnection, owner: str | None, by_cap_group: bool, excluding: bool,
                      params: dict[str, Any]) -> int:
    """Grams of approved actions of category ``code`` that occurred in [start, end), of one member
    (``owner="user"``), one household, or everybody (None), optionally of one cap group and without
    the action ``exclude_id``: one driver statement per shape (every capped submission asks it)."""
    def build() -> DriverStatement:
        q = select(func.coalesce(func.sum(T.c.grams_co2e), 0).label("used")).where(
            T.c.plugin_code == bindparam("code"), T.c.status == APPROVED,
            T.c.occurred_from >= bindparam("start", type_=T.c.occurred_from.type),
            T.c.occurred_from < bindparam("end", type_=T.c.occurred_from.type))
        if owner is not None:
            q = q.where((T.c.household_id if owner == "household" else T.c.user_id) == bindparam("owner_id"))
        if by_cap_group:
            q = q.where(T.c.cap_group == bindparam("cap_group"))
        if excluding:
            q = q.where(T.c.id != bindparam("exclude_id"))
        return DriverStatement(q)

    stmt = _GRAMS_USED.get((owner, by_cap_group, excluding), build)
    return int((await stmt.all(conn, params))[0]["used"])


async def _cap_room(
    conn: AsyncConnection, *, user_id: int, code: str, caps: Caps, occurred: datetime, tz: ZoneInfo,
    grams_per_point: int, exclude_id: int | None = None, cap_group: str | None = None,
    cap_group_daily_grams: int | None = None, household_id: int | None = None,
) -> tuple[int | None, str | None]:
    """How many more grams may be credited to this member in this category for the day/month of
    ``occurred`` (None = unlimited), and the name of the tightest cap. With ``caps.per_household`` the
    daily/monthly limits count the household's actions together (the caller holds the household's lock)."""
    room: int | None = None
    which: str | None = None
    by_household = caps.per_household and household_id is not None
    owner = {"owner_id": household_id if by_household else user_id}
    base = {"code": code, "exclude_id": exclude_id}
    for monthly, grams_cap, points_cap in (
        (False, caps.daily_grams, caps.daily_points),
        (True, caps.monthly_grams, caps.monthly_points),
    ):
        limits = [c for c in (grams_cap, points_cap * grams_per_point if points_cap is not None else None) if c is not None]
        if not limits:
            continue
        start, end = _window_bounds(occurred, tz, monthly)
        used = await _grams_used(conn, "household" if by_household else "user", False, exclude_id is not None,
                                 {**base, **owner, "start": start, "end": end})
        left = max(0, min(limits) - used)
        if room is None or left < room:
            room, which = left, "monthly" if monthly else "daily"
    if caps.platform_daily_grams is not None:
        # All members' credits of this category count: serialise them on PostgreSQL with a transaction-level
        # advisory lock per category (SQLite write transactions are already serialised by BEGIN IMMEDIATE).
        if conn.dialect.name == "postgresql":
            await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"jingtan.action_cap:{code}"))))
        start, end = _window_bounds(occurred, tz, False)
        used = await _grams_used(conn, None, False, exclude_id is not None, {**base, "start": start, "end": end})
        left = max(0, caps.platform_daily_grams - used)
        if room is None or left < room:
            room, which = left, "platform daily"
    if cap_group is not None and cap_group_daily_grams is not None:
        start, end = _window_bounds(occurred, tz, False)
        used = await _grams_used(conn, "user", True, exclude_id is not None,
                                 {**base, "owner_id": user_id, "cap_group": cap_group, "start": start, "end": end})
        left = max(0, cap_group_daily_grams - used)
        if room is None or left < room:
            room, which = left, f"daily ({cap_group})"
    return room, which


_credited_at = func.coalesce(T.c.reviewed_at, T.c.created_at)
_MEMBER_USED = DriverStatement(
    select(
        func.coalesce(func.sum(case((and_(_credited_at >= bindparam("day_start", type_=T.c.created_at.type),
                                          _credited_at < bindparam("day_end", type_=T.c.created_at.type)), T.c.points),
                                    else_=0)), 0).label("daily"),
        func.coalesce(func.sum(T.c.points), 0).label("monthly"),
    ).where(T.c.user_id == bindparam("user_id"), T.c.status == APPROVED,
            _credited_at >= bindparam("month_start", type_=T.c.created_at.type),
            _credited_at < bindparam("month_end", type_=T.c.created_at.type)))


async def _member_room(
    conn: AsyncConnection, *, user_id: int, settings: Settings, now: datetime, tz: ZoneInfo, grams_per_point: int,
) -> tuple[int | None, str | None]:
    """The core's per-member caps across all action types (``[actions] member_daily_cap_points`` and
    ``member_monthly_cap_points``): how many more grams may be credited to this member in the local day and
    month of ``now`` (points are counted when credited: at submission, or at approval for a reviewed
    action), and which cap is the tightest. Called with the member's account row locked, so concurrent
    submissions of one member see each other's credits."""
    day_start, day_end = _window_bounds(now, tz, False)
    month_start, month_end = _window_bounds(now, tz, True)  # the local day lies inside the local month
    used = (await _MEMBER_USED.all(conn, {"user_id": user_id, "day_start": day_start, "day_end": day_end,
                                         "month_start": month_start, "month_end": month_end}))[0]
    daily_used, monthly_used = used["daily"], used["monthly"]  # one statement for both caps
    room: int | None = None
    which: str | None = None
    for monthly, cap, used in ((False, settings.actions.member_daily_cap_points, daily_used),
                               (True, settings.actions.member_monthly_cap_points, monthly_used)):
        left = max(0, cap - int(used)) * grams_per_point
        if room is None or left < room:
            room, which = left, "member monthly" if monthly else "member daily"
    return room, which


def review_threshold(settings: Settings, code: str) -> int:
    """Points above which an action of type ``code`` goes to review (``[actions] review_above_points``,
    overridden per type by ``review_above_points_by_type``)."""
    return settings.actions.review_above_points_by_type.get(code, settings.actions.review_above_points)


def credit_memo(loaded: LoadedActionType | None, code: str, action_id: int) -> str:
    """The ledger memo of an action's credit: bilingual, human, with the action's global ID (what every
    query takes), e.g. ``Green transport action QWN0aW9uOjM= / 绿色出行行为 QWN0aW9uOjM=``. Memos written
    before this rule (``transit action #3``) stay as they were: the ledger is append-only."""
    gid = base64.b64encode(f"Action:{action_id}".encode()).decode()  # = graphql.relay.to_global_id
    name_en = loaded.action_type.name_en if loaded else code
    name_zh = loaded.action_type.name_zh if loaded else code
    return f"{name_en} action {gid} / {name_zh}行为 {gid}"[:200]


_SET_TRANSACTION = DriverStatement(
    update(T).where(T.c.id == bindparam("action_id")).values(transaction_id=bindparam("transaction_id")))


async def _credit(conn: AsyncConnection, *, action_id: int, account_id: int, points: int, code: str,
                  now: datetime, lot_expiry_days: int, actor_user_id: int | None, issuance: int,
                  loaded: LoadedActionType | None = None) -> int | None:
    if points <= 0:
        return None
    tx = await ledger.post_transaction(
        conn,
        kind=ACTION_CREDIT,
        postings=[ledger.Posting(issuance, -points), ledger.Posting(account_id, points)],
        now=now,
        lot_expiry_days=lot_expiry_days,
        memo=credit_memo(loaded, code, action_id),
        actor_user_id=actor_user_id,
    )
    await _SET_TRANSACTION.all(conn, {"action_id": action_id, "transaction_id": tx.id})
    return tx.id


def _apply_cap(grams: int, room: int | None, which: str | None, reasons: list[Reason]) -> tuple[int, bool]:
    """Returns (grams to credit, cap_exhausted)."""
    if room is None or grams <= room:
        return grams, False
    period_zh = ("每人" if which and which.startswith("member") else "") + ("每月" if which and "monthly" in which else "每日")
    if room == 0:
        reasons.append(Reason("CAP_REACHED", f"The {which} limit is reached / 已达到{period_zh}上限"))
        return 0, True
    reasons.append(Reason("CAPPED", f"Credited only up to the {which} limit ({room} g left) / 按{period_zh}上限计入"))
    return room, False


_INSERTS = StatementCache()


def _insert_action(dialect: str, columns: tuple[str, ...], unique_evidence: bool) -> DriverStatement:
    """The action's INSERT … RETURNING (every column) on the driver path, built once per dialect and shape; with
    ``unique_evidence`` it does nothing when a concurrent twin holds the evidence (no row returned)."""
    def build() -> DriverStatement:
        ins = dialect_insert_for(dialect, T).values(column_binds(T, columns))
        if unique_evidence:
            ins = ins.on_conflict_do_nothing(index_elements=["plugin_code", "evidence_fingerprint"])
        return DriverStatement(ins.returning(*T.c))

    return _INSERTS.get((dialect, columns, unique_evidence), build)


async def submit(
    app: "Services",
    *,
    user_id: int,
    code: str,
    raw_input: dict,
    raw_evidence: dict | None,
    idempotency_key: str,
    now: datetime,
) -> SubmitResult:
    key = idempotency.validate_key(idempotency_key)
    loaded = app.plugins.get(code)
    if loaded is None:
        raise ValidationFailed(f"Action type {code!r} is not enabled / 该类别未启用", code="ACTION_TYPE_DISABLED", field="action")
    scope = f"submitAction:{user_id}"
    req_hash = idempotency.request_hash({"code": code, "input": raw_input, "evidence": raw_evidence})
    evidence = parse_evidence(raw_evidence)
    model = validate_input(loaded, raw_input)
    at = loaded.action_type
    reasons: list[Reason] = []
    verification: Verification | None = None
    calculation: Calculation | None = None
    timeout = app.settings.plugins.timeout_seconds
    try:
        occurred_from, occurred_to = at.period(model)
        fingerprint = at.evidence_fingerprint(model, evidence)
        subject = at.subject(model)
    except Exception as exc:  # noqa: BLE001 - plugin code
        raise _failure(loaded, "period/fingerprint", exc) from None
    # One read transaction: was this key used (replay / conflict), was this evidence used?
    # The identity gate (docs/identity.md) is checked in the same read transaction.
    seen, evidence_used, household_id = await _precheck(
        app.db, scope, key, code, fingerprint, user_id, verified_contact=app.settings.identity.require_verified_contact)
    ctx = make_context(loaded, app.settings, app.db, user_id, now, household_id)
    if seen is not None:
        if seen[0] != req_hash:
            raise IdempotencyConflict(
                "This idempotencyKey was already used with a different input / 该幂等键已用于不同的请求",
                field="idempotencyKey",
            )
        if seen[1] is not None:
            return SubmitResult(seen[1], True)
    if occurred_to > now or occurred_from > now:
        raise ValidationFailed("The action cannot end in the future / 行为时间不能晚于现在", code="FUTURE_TIMESTAMP", field="action")
    if occurred_to < occurred_from:
        raise ValidationFailed("The end must not be before the start / 结束时间不能早于开始时间", code="END_BEFORE_START", field="action")
    if occurred_to < now - ctx.claim_window:
        reasons.append(Reason("CLAIM_WINDOW_PASSED", f"Actions must be claimed within {ctx.claim_window.days} days / 超过申报期限"))
    elif evidence_used:
        reasons.append(Reason("DUPLICATE_EVIDENCE", "This evidence was already used / 该凭证已被使用"))
    if not reasons:
        plugin_started = time.perf_counter()
        try:
            verification = await asyncio.wait_for(at.verify(model, evidence, ctx), timeout=timeout)
            if not isinstance(verification, Verification):
                raise TypeError(f"verify returned {type(verification).__name__}, not Verification")
            if verification.status != Status.REJECTED:
                calculation = at.calculate(model, verification, ctx)
                if not isinstance(calculation, Calculation):
                    raise TypeError(f"calculate returned {type(calculation).__name__}, not Calculation")
        except TimeoutError:
            metrics.PLUGIN_FAILURES.labels(action_type=code, reason="timeout").inc()
            log.error("plugin timed out", extra={"plugin": loaded.plugin, "action_type": code, "timeout_s": timeout})
            raise PluginFailure(
                f"The {code} plugin did not answer in time; nothing was recorded, please retry / 插件超时，未记录",
            ) from None
        except Exception as exc:  # noqa: BLE001 - isolation: any plugin bug is a typed failure
            metrics.PLUGIN_FAILURES.labels(action_type=code, reason="error").inc()
            raise _failure(loaded, "verify/calculate", exc) from None
        finally:
            metrics.PLUGIN_DURATION.labels(action_type=code).observe(time.perf_counter() - plugin_started)
        reasons.extend(verification.reasons)
    status = verification.status.value if verification is not None else REJECTED
    grams = calculation.grams_co2e if calculation else 0
    max_points = app.settings.points.max_single_amount
    if status == APPROVED and grams // app.settings.points.grams_per_point > max_points:
        # A plugin bug or a forged input must not mint an unbounded credit: a person looks at it first.
        status = NEEDS_REVIEW
        reasons.append(Reason("LARGE_CREDIT", f"More than {max_points} points in one action needs review / 单次积分过大，需审核"))
    base_row = {
        "user_id": user_id,
        "plugin_code": code,
        "plugin_version": at.version,
        "input": _dumps(model.model_dump(mode="json")),
        "evidence": _dumps(evidence.as_dict()),
        "evidence_fingerprint_seen": fingerprint,
        "subject": subject,
        "occurred_from": occurred_from,
        "occurred_to": occurred_to,
        "factor_ids": _dumps(calculation.factor_ids if calculation else []),
        "factors": _dumps([f.as_dict() for f in calculation.factors] if calculation else []),
        "formula": calculation.formula if calculation else "",
        "cap_group": calculation.cap_group if calculation else None,
        "cap_group_daily_grams": calculation.cap_group_daily_grams if calculation else None,
        "created_at": now,
        "household_id": household_id,
    }
    gpp = app.settings.points.grams_per_point
    tz = ctx.timezone
    caps = loaded.caps
    lot_days = app.settings.points.lot_expiry_days
    threshold = review_threshold(app.settings, code)
    base_row["methodology_version_id"] = (await methodologies.ensure_versions(app, now=now))[code]
    gated = app.settings.methodology_approval_required

    async def work(conn: AsyncConnection) -> SubmitResult:
        claim = await idempotency.claim(conn, scope, key, req_hash)
        if claim.is_replay:
            return SubmitResult(claim.result_id, True)
        account_id = await ledger.lock_member_account(conn, user_id)
        row_reasons = list(reasons)
        row_status, row_grams = status, grams
        if row_status == APPROVED:
            if caps.per_household and household_id is not None:
                await households.lock_household(conn, household_id)  # members of one household share the caps
            room, which = await _cap_room(
                conn, user_id=user_id, code=code, caps=caps, occurred=occurred_from, tz=tz, grams_per_point=gpp,
                cap_group=base_row["cap_group"], cap_group_daily_grams=base_row["cap_group_daily_grams"],
                household_id=household_id,
            )
            row_grams, exhausted = _apply_cap(row_grams, room, which, row_reasons)
            if not exhausted:
                room, which = await _member_room(conn, user_id=user_id, settings=app.settings, now=now, tz=tz,
                                                 grams_per_point=gpp)
                row_grams, exhausted = _apply_cap(row_grams, room, which, row_reasons)
            if exhausted:
                row_status = REJECTED
            elif row_grams // gpp > threshold:
                # The core's guard, whatever the plugin decided: a large credit is looked at by a person first.
                row_status = NEEDS_REVIEW
                row_reasons.append(Reason(
                    "ABOVE_REVIEW_THRESHOLD",
                    f"More than {threshold} points for one {code} action needs review / 单次超过 {threshold} 积分，需人工审核",
                ))
        if row_status == APPROVED and gated and not await methodologies.version_gate(conn, base_row["methodology_version_id"]):
            row_status = PENDING_METHODOLOGY
            row_reasons.append(_WAITING_REASON)
        row = {
            **base_row,
            "status": row_status,
            "reasons": _dumps([r.__dict__ for r in row_reasons]),
            "grams_co2e": row_grams if row_status != REJECTED else 0,
            "points": (row_grams // gpp) if row_status != REJECTED else 0,
            "evidence_fingerprint": fingerprint if row_status != REJECTED else None,
        }
        inserted = await _insert_action(conn.dialect.name, tuple(row), fingerprint is not None and row_status != REJECTED
                                        ).all(conn, row)
        stored = inserted[0] if inserted else None
        action_id = stored["id"] if stored is not None else None
        if action_id is None:  # a concurrent twin took this evidence first
            dup = Reason("DUPLICATE_EVIDENCE", "This evidence was already used / 该凭证已被使用")
            row.update(status=REJECTED, grams_co2e=0, points=0, evidence_fingerprint=None, reasons=_dumps([dup.__dict__]))
            action_id = (await conn.execute(insert(T).values(**row).returning(T.c.id))).scalar_one()
        elif row["status"] == APPROVED:
            tx_id = await _credit(conn, action_id=action_id, account_id=account_id, points=row["points"], code=code,
                                  now=now, lot_expiry_days=lot_days, actor_user_id=None, loaded=loaded,
                                  issuance=await ledger.cached_platform_account_id(app.platform_accounts, conn, ledger.ISSUANCE_CODE))
            if stored is not None:
                stored["transaction_id"] = tx_id  # the one column written after the INSERT (_credit)
        await _emit_action(conn, "action.recorded", action_id, user_id, code, row)
        await idempotency.complete(conn, claim, "Action", action_id)
        return SubmitResult(action_id, False, stored)

    return await app.db.write(work)

async def _emit_action(conn: AsyncConnection, event_type: str, action_id: int, user_id: int, code: str,
                       row: dict[str, Any], **extra: Any) -> None:
    """``action.recorded``/``action.reviewed``, and ``action.approved`` when the action became APPROVED
    (its points are credited in this transaction). See jingtan_api.events."""
    data = dict(action_id=action_id, user_id=user_id, plugin_code=code, status=row["status"],
                grams_co2e=row["grams_co2e"], points=row["points"])
    await events.emit(conn, event_type, **data, **extra)
    if row["status"] == APPROVED:
        data.pop("status")
        await events.emit(conn, "action.approved", **data)


def _failure(loaded: LoadedActionType, stage: str, exc: BaseException) -> PluginFailure:
    log.error(
        "plugin failed",
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"plugin": loaded.plugin, "action_type": loaded.code, "stage": stage},
    )
    return PluginFailure(
        f"The {loaded.code} plugin failed; nothing was recorded / 插件出错，未记录（{type(exc).__name__}）"
    )

async def review(
    app: "Services", *, actor_user_id: int, action_id: int, approve: bool, reason: str, now: datetime, request_id: str | None
) -> int:
    reason = audit.validate_reason(reason)
    gpp = app.settings.points.grams_per_point
    tz = ZoneInfo(app.settings.actions.timezone)
    lot_days = app.settings.points.lot_expiry_days

    async def work(conn: AsyncConnection) -> int:
        row = (await conn.execute(select(T).where(T.c.id == action_id))).first()
        if row is None:
            raise NotFound("No such action / 行为记录不存在", field="actionId")
        row = row._mapping
        if row["status"] != NEEDS_REVIEW:
            raise Conflict("This action is not awaiting review / 该行为不在待审核状态", code="NOT_PENDING_REVIEW", field="actionId")
        account_id = await ledger.lock_member_account(conn, row["user_id"])
        reasons = [Reason(**r) for r in json.loads(row["reasons"])]
        values: dict[str, Any] = {"reviewed_by": actor_user_id, "reviewed_at": now, "review_reason": reason}
        if approve:
            loaded = app.plugins.get(row["plugin_code"])
            caps = loaded.caps if loaded else Caps()
            if caps.per_household and row["household_id"] is not None:
                await households.lock_household(conn, row["household_id"])
            room, which = await _cap_room(conn, user_id=row["user_id"], code=row["plugin_code"], caps=caps,
                                          occurred=row["occurred_from"], tz=tz, grams_per_point=gpp, exclude_id=action_id,
                                          cap_group=row["cap_group"], cap_group_daily_grams=row["cap_group_daily_grams"],
                                          household_id=row["household_id"])
            grams, exhausted = _apply_cap(row["grams_co2e"], room, which, reasons)
            if not exhausted:
                room, which = await _member_room(conn, user_id=row["user_id"], settings=app.settings, now=now, tz=tz,
                                                 grams_per_point=gpp)
                grams, exhausted = _apply_cap(grams, room, which, reasons)
            grams = min(grams, app.settings.points.max_single_amount * gpp)
            status = REJECTED if exhausted else APPROVED
            if (status == APPROVED and app.settings.methodology_approval_required and row["methodology_version_id"]
                    and not await methodologies.version_gate(conn, row["methodology_version_id"])):
                status = PENDING_METHODOLOGY
                reasons.append(_WAITING_REASON)
            values.update(status=status, grams_co2e=grams, points=grams // gpp, reasons=_dumps([r.__dict__ for r in reasons]))
            if exhausted:
                values.update(points=0, evidence_fingerprint=None)
        else:
            reasons.append(Reason("REJECTED_BY_REVIEW", reason))
            values.update(status=REJECTED, grams_co2e=0, points=0, reasons=_dumps([r.__dict__ for r in reasons]))
        done = (
            await conn.execute(
                update(T).where(T.c.id == action_id, T.c.status == NEEDS_REVIEW).values(**values).returning(T.c.id)
            )
        ).scalar_one_or_none()
        if done is None:
            raise Conflict("This action is not awaiting review / 该行为不在待审核状态", code="NOT_PENDING_REVIEW", field="actionId")
        if values["status"] == APPROVED:
            await _credit(conn, action_id=action_id, account_id=account_id, points=values["points"],
                          code=row["plugin_code"], now=now, lot_expiry_days=lot_days, actor_user_id=actor_user_id,
                          loaded=app.plugins.get(row["plugin_code"]), issuance=await ledger.cached_platform_account_id(app.platform_accounts, conn, ledger.ISSUANCE_CODE))
        await _emit_action(conn, "action.reviewed", action_id, row["user_id"], row["plugin_code"], values,
                           reviewer_id=actor_user_id)
        await audit.record(
            conn,
            actor_user_id=actor_user_id,
            action="action.review." + ("approve" if approve else "reject"),
            target_type="Action",
            target_id=action_id,
            reason=reason,
            details={"status": values["status"], "points": values.get("points", 0)},
            request_id=request_id,
            now=now,
        )
        return action_id

    return await app.db.write(work)


# --- methodology governance: crediting or rejecting the actions waiting for a version ----------------


async def credit_waiting(app: "Services", *, version_id: int, now: datetime) -> tuple[int, int]:
    """Credit the actions waiting in PENDING_METHODOLOGY for ``version_id`` (call it after the version was
    approved): keyset batches of ``[methodologies] credit_batch_size`` ids, one write transaction per action
    (member account locked first, as everywhere), the grams stored at submission (calculated with the
    factors of this very version), caps applied again as at review. Idempotent and safe in concurrent
    processes: the conditional ``UPDATE … WHERE status = 'PENDING_METHODOLOGY'`` lets one transaction credit
    an action. Returns (actions credited, points credited)."""
    gpp = app.settings.points.grams_per_point
    tz = ZoneInfo(app.settings.actions.timezone)
    lot_days = app.settings.points.lot_expiry_days
    batch = app.settings.methodologies.credit_batch_size

    async def fetch(conn: AsyncConnection, after: int) -> list[int]:
        return list((await conn.execute(
            select(T.c.id).where(T.c.methodology_version_id == version_id, T.c.status == PENDING_METHODOLOGY,
                                 T.c.id > after).order_by(T.c.id).limit(batch)
        )).scalars())

    async def process(conn: AsyncConnection, action_id: int) -> int:
        row = (await conn.execute(select(T).where(T.c.id == action_id))).first()
        if row is None or row.status != PENDING_METHODOLOGY or not await methodologies.version_gate(conn, version_id):
            return 0
        row = row._mapping
        account_id = await ledger.lock_member_account(conn, row["user_id"])
        reasons = [Reason(**r) for r in json.loads(row["reasons"]) if r.get("code") != _WAITING_REASON.code]
        loaded = app.plugins.get(row["plugin_code"])
        room, which = await _cap_room(conn, user_id=row["user_id"], code=row["plugin_code"],
                                      caps=loaded.caps if loaded else Caps(), occurred=row["occurred_from"], tz=tz,
                                      grams_per_point=gpp, exclude_id=action_id, cap_group=row["cap_group"],
                                      cap_group_daily_grams=row["cap_group_daily_grams"])
        grams, exhausted = _apply_cap(row["grams_co2e"], room, which, reasons)
        if not exhausted:
            room, which = await _member_room(conn, user_id=row["user_id"], settings=app.settings, now=now, tz=tz,
                                             grams_per_point=gpp)
            grams, exhausted = _apply_cap(grams, room, which, reasons)
        values: dict[str, Any] = {"status": REJECTED if exhausted else APPROVED, "grams_co2e": 0 if exhausted else grams,
                                  "points": 0 if exhausted else grams // gpp, "reasons": _dumps([r.__dict__ for r in reasons])}
        if exhausted:
            values["evidence_fingerprint"] = None
        done = (await conn.execute(
            update(T).where(T.c.id == action_id, T.c.status == PENDING_METHODOLOGY).values(**values).returning(T.c.id)
        )).scalar_one_or_none()
        if done is None:
            return 0
        if values["status"] == APPROVED:
            await _credit(conn, action_id=action_id, account_id=account_id, points=values["points"],
                          code=row["plugin_code"], now=now, lot_expiry_days=lot_days, actor_user_id=None, loaded=loaded,
                          issuance=await ledger.cached_platform_account_id(app.platform_accounts, conn, ledger.ISSUANCE_CODE))
            await events.emit(conn, "action.approved", action_id=action_id, user_id=row["user_id"],
                              plugin_code=row["plugin_code"], grams_co2e=values["grams_co2e"], points=values["points"])
        return max(values["points"], 1) if values["status"] == APPROVED else 0

    done, _ = await run_batched(app.db, fetch=fetch, process=process, batch_size=batch,
                                what="crediting an action of an approved methodology")
    async with app.db.read() as conn:
        points = int((await conn.execute(
            select(func.coalesce(func.sum(T.c.points), 0)).where(T.c.methodology_version_id == version_id,
                                                                 T.c.status == APPROVED)
        )).scalar_one())
    return done, points


async def reject_waiting(app: "Services", *, version_id: int, note: str, now: datetime) -> int:
    """Reject the actions waiting for ``version_id`` (call it after the version was rejected): REJECTED with
    reason METHODOLOGY_REJECTED and the expert's note, evidence released so the member may submit again
    once a corrected version is approved. Same batching and idempotency as :func:`credit_waiting`."""
    batch = app.settings.methodologies.credit_batch_size
    reason = Reason("METHODOLOGY_REJECTED", f"The expert committee rejected this methodology version: {note} "
                                            f"/ 专家委员会未批准该方法学版本：{note}")

    async def fetch(conn: AsyncConnection, after: int) -> list[int]:
        return list((await conn.execute(
            select(T.c.id).where(T.c.methodology_version_id == version_id, T.c.status == PENDING_METHODOLOGY,
                                 T.c.id > after).order_by(T.c.id).limit(batch)
        )).scalars())

    async def process(conn: AsyncConnection, action_id: int) -> int:
        row = (await conn.execute(select(T).where(T.c.id == action_id))).first()
        if row is None or row.status != PENDING_METHODOLOGY:
            return 0
        reasons = [r for r in json.loads(row.reasons) if r.get("code") != _WAITING_REASON.code] + [reason.__dict__]
        values = {"status": REJECTED, "grams_co2e": 0, "points": 0, "evidence_fingerprint": None, "reasons": _dumps(reasons)}
        done = (await conn.execute(
            update(T).where(T.c.id == action_id, T.c.status == PENDING_METHODOLOGY).values(**values).returning(T.c.id)
        )).scalar_one_or_none()
        if done is None:
            return 0
        return 1

    done, _ = await run_batched(app.db, fetch=fetch, process=process, batch_size=batch,
                                what="rejecting an action of a rejected methodology")
    return done


async def versions_with_waiting_actions(conn: AsyncConnection) -> list[int]:
    """Ids of methodology versions some PENDING_METHODOLOGY action waits for (for the safety-net job)."""
    return list((await conn.execute(
        select(T.c.methodology_version_id).where(T.c.status == PENDING_METHODOLOGY,
                                                 T.c.methodology_version_id.is_not(None)).distinct()
    )).scalars())


# --- reads ------------------------------------------------------------------------------------------


def action_dict(row: Any) -> dict:
    return dict(row._mapping)


async def actions_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    if not ids:
        return {}
    return {r["id"]: r for r in await _ACTIONS_BY_IDS.all(conn, {"ids": list(ids)})}


_ACTIONS_BY_IDS = DriverStatement(select(T).where(in_list(T.c.id, "ids")))


def _actions_where(stmt: Any, *, user_id: int | None, status: str | None, plugin_code: str | None) -> Any:
    if user_id is not None:
        stmt = stmt.where(T.c.user_id == user_id)
    if status is not None:
        stmt = stmt.where(T.c.status == status)
    if plugin_code is not None:
        stmt = stmt.where(T.c.plugin_code == plugin_code)
    return stmt


async def actions_page(
    conn: AsyncConnection, args: PageArgs, *, user_id: int | None = None, status: str | None = None,
    plugin_code: str | None = None,
) -> Page:
    """Newest first, keyset on id."""
    stmt = _actions_where(select(T), user_id=user_id, status=status, plugin_code=plugin_code)
    return await keyset_page(conn, stmt, [(T.c.id, True)], args)


async def count_actions(
    conn: AsyncConnection, *, user_id: int | None = None, status: str | None = None, plugin_code: str | None = None
) -> int:
    q = _actions_where(select(func.count()).select_from(T), user_id=user_id, status=status, plugin_code=plugin_code)
    return int((await conn.execute(q)).scalar_one())
