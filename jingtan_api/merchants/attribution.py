"""Where an action was done: stations of merchants and the attribution of approved actions.

How an action names a merchant (docs/merchants.md, "Actions at a merchant"), first match wins:

1. its evidence ``source`` is ``merchant:<Merchant global id>`` (the code a merchant shows at its counter);
2. its evidence ``source`` is ``station:<station code>``;
3. its plugin ``subject`` is a registered station code (the recycling plugin's ``stationId`` is its subject,
   so a drop-off at a merchant's station needs nothing extra).

Only ACTIVE merchants are attributed. An approved action gets one ``merchant_action`` row, written by the
listener of ``action.approved`` in the approving transaction (never for rejected or pending actions). The
row copies the action's grams and points for per-merchant analytics; it adds no CO2e anywhere.
"""

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.actions.models import Action
from jingtan_api.db import dialect_insert
from jingtan_api.driver import DriverStatement, column_binds
from jingtan_api.errors import Conflict, ValidationFailed
from jingtan_api import events
from jingtan_api.events import Event, EventBus
from jingtan_api.merchants.models import Merchant, MerchantAction, MerchantStation
from jingtan_api.merchants.service import ACTIVE, Actor, clean_text, require_merchant_manager

if TYPE_CHECKING:
    from jingtan_api.services import Services

ACT = Action.__table__
M = Merchant.__table__
MA = MerchantAction.__table__
ST = MerchantStation.__table__

STATION_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_STATIONS = 200


def merchant_pk_of(global_id: str) -> int | None:
    """The merchant id in a Merchant global id (``base64("Merchant:<id>")``, the Relay encoding of
    ``graphql.relay``; decoded here because services do not import the GraphQL layer), or None."""
    try:
        text = base64.b64decode(global_id.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    type_name, _, raw = text.partition(":")
    if type_name != "Merchant" or not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
        return None
    return int(raw)


@dataclass(frozen=True)
class Place:
    merchant_id: int
    station_id: int | None


def validate_station_code(code: Any) -> str:
    if not isinstance(code, str) or not STATION_CODE.match(code):
        raise ValidationFailed(
            "Station code: 1-64 letters, digits, _ . : - / 站点编号须为 1-64 位字母、数字或 _ . : -", field="code"
        )
    return code


async def add_station(conn: AsyncConnection, *, actor: Actor, merchant_id: int, code: Any, name_zh: Any,
                      name_en: Any, now: datetime) -> int:
    """Register a station code of the merchant (unique across merchants)."""
    require_merchant_manager(actor, merchant_id)
    code = validate_station_code(code)
    values = dict(
        merchant_id=merchant_id, code=code, created_at=now,
        name_zh=clean_text(name_zh, "nameZh", max_len=100), name_en=clean_text(name_en, "nameEn", max_len=100),
    )
    count = (await conn.execute(select(func.count()).select_from(ST).where(ST.c.merchant_id == merchant_id))).scalar_one()
    if count >= MAX_STATIONS:
        raise ValidationFailed(f"At most {MAX_STATIONS} stations / 最多 {MAX_STATIONS} 个站点", field="code")
    stmt = dialect_insert(conn, ST).values(**values).on_conflict_do_nothing(index_elements=["code"])
    station_id = (await conn.execute(stmt.returning(ST.c.id))).scalar_one_or_none()
    if station_id is None:
        raise Conflict("This station code is already registered / 该站点编号已被登记", code="STATION_CODE_TAKEN", field="code")
    return station_id


async def stations_of(conn: AsyncConnection, merchant_ids: Sequence[int]) -> dict[int, list[dict]]:
    rows = await conn.execute(select(ST).where(ST.c.merchant_id.in_(list(merchant_ids))).order_by(ST.c.id))
    out: dict[int, list[dict]] = {}
    for r in rows:
        out.setdefault(r.merchant_id, []).append(dict(r._mapping))
    return out


async def resolve_place(conn: AsyncConnection, *, source: str | None, subject: str | None) -> Place | None:
    """The ACTIVE merchant (and station) an action names, or None."""
    if source and source.startswith("merchant:"):
        merchant_id = merchant_pk_of(source.removeprefix("merchant:"))
        if merchant_id is not None:
            status = (await conn.execute(select(M.c.status).where(M.c.id == merchant_id))).scalar_one_or_none()
            return Place(merchant_id, None) if status == ACTIVE else None
        return None
    code = source.removeprefix("station:") if source and source.startswith("station:") else subject
    if not code:
        return None
    rows = await _ACTIVE_STATION.all(conn, {"code": code})
    return Place(rows[0]["merchant_id"], rows[0]["id"]) if rows else None


_MEMO_KEY = "jingtan.merchants.attribution"


async def attribute(conn: AsyncConnection, action_id: int) -> Place | None:
    """Record where the (approved) action was done, once; returns the place or None. Inside a write
    transaction the answer is kept for the attempt (``events.attempt_memo``): the merchants' and the
    campaigns' ``action.approved`` listeners both ask, and the second no longer reads the action again."""
    memo = events.attempt_memo()
    if memo is not None:
        known = memo.setdefault(_MEMO_KEY, {})
        if action_id in known:
            return known[action_id]
        place = known[action_id] = await _attribute(conn, action_id)
        return place
    return await _attribute(conn, action_id)


# Every approval asks where it was done: these reads are on the driver path (jingtan_api.driver).
_ACTIVE_STATION = DriverStatement(
    select(ST.c.id, ST.c.merchant_id).join(M, M.c.id == ST.c.merchant_id)
    .where(ST.c.code == bindparam("code"), M.c.status == ACTIVE))
# The action and its attribution if it has one already, in one statement.
_attributed = select(MA.c.merchant_id, MA.c.station_id).where(MA.c.action_id == ACT.c.id)
_ACTION = DriverStatement(
    select(ACT.c.user_id, ACT.c.evidence, ACT.c.subject, ACT.c.grams_co2e, ACT.c.points, ACT.c.reviewed_at,
           ACT.c.created_at,
           _attributed.with_only_columns(MA.c.merchant_id).scalar_subquery().label("attributed_merchant_id"),
           _attributed.with_only_columns(MA.c.station_id).scalar_subquery().label("attributed_station_id"))
    .where(ACT.c.id == bindparam("aid")))
_ATTRIBUTE = DriverStatement(insert(MA).values(column_binds(
    MA, ("action_id", "merchant_id", "user_id", "station_id", "grams_co2e", "points", "approved_at"))))


async def _attribute(conn: AsyncConnection, action_id: int) -> Place | None:
    row = (await _ACTION.all(conn, {"aid": action_id}))[0]
    if row["attributed_merchant_id"] is not None:
        return Place(row["attributed_merchant_id"], row["attributed_station_id"])
    evidence = json.loads(row["evidence"] or "{}")
    place = await resolve_place(conn, source=evidence.get("source"), subject=row["subject"])
    if place is None:
        return None
    await _ATTRIBUTE.all(conn, {
        "action_id": action_id, "merchant_id": place.merchant_id, "user_id": row["user_id"],
        "station_id": place.station_id, "grams_co2e": row["grams_co2e"], "points": row["points"],
        "approved_at": row["reviewed_at"] or row["created_at"],
    })
    return place


def register_listeners(bus: EventBus, app: "Services") -> None:
    async def on_approved(conn: AsyncConnection, event: Event) -> None:
        await attribute(conn, event.data["action_id"])

    bus.listen("action.approved", on_approved)
