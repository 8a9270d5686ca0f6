"""Methodology governance (no GraphQL here; docs/methodology.md, section "Governance").

* Every enabled action type's methodology as this server runs it (factor table with overrides applied,
  formula text) is a **version**, registered on first use (:func:`ensure_versions`) and identified by its
  fingerprint: a factor override or a plugin upgrade that changes factors or formula registers a new
  version (PENDING); an unchanged methodology is the same version, whichever process or restart sees it.
* An EXPERT decides: PENDING -> APPROVED or REJECTED, APPROVED -> RETIRED, RETIRED -> APPROVED (reinstated).
  Each decision is one conditional ``UPDATE`` plus a review-history row and an audit entry; two experts
  deciding at once: one wins, the other gets ``METHODOLOGY_NOT_REVIEWABLE``.
* :func:`version_gate` is what a submission asks, inside its write transaction: is the version approved?
  On PostgreSQL it reads the row ``FOR SHARE``, so an approval (which updates the row) waits for every
  submission that saw the version unapproved to commit, and the crediting that follows the approval sees
  all of their waiting actions.
* Crediting the waiting actions is the actions domain's work (``actions.service.credit_waiting``); this
  module only knows the versions.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.actions.models import Action
from jingtan_api.audit import service as audit
from jingtan_api.db import Database, Page, PageArgs, dialect_insert, keyset_page
from jingtan_api.errors import Conflict, NotFound
from jingtan_api.methodologies.models import MethodologyReview, MethodologyVersion
from jingtan_api.plugins.manager import LoadedActionType, PluginHost
from jingtan_api.users.models import User

if TYPE_CHECKING:
    from jingtan_api.services import Services

V = MethodologyVersion.__table__
R = MethodologyReview.__table__
U = User.__table__
A = Action.__table__

PENDING, APPROVED, REJECTED, RETIRED = "PENDING", "APPROVED", "REJECTED", "RETIRED"
STATES = (PENDING, APPROVED, REJECTED, RETIRED)
SUBMITTED = "SUBMITTED"
# decision -> (states it may start from, resulting state)
DECISIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "APPROVE": ((PENDING, RETIRED), APPROVED),
    "REJECT": ((PENDING,), REJECTED),
    "RETIRE": ((APPROVED,), RETIRED),
}


class MethodologyNotReviewable(Conflict):
    """The version is not in a state that allows this decision (e.g. already approved by someone else)."""

    code = "METHODOLOGY_NOT_REVIEWABLE"


def methodology_payload(loaded: LoadedActionType) -> dict[str, Any]:
    """What a version is: title, reference, formula text and the factor table (values and sources)."""
    m = loaded.methodology
    return {
        "title": m.title,
        "reference": m.reference,
        "text": m.text,
        "factors": [f.as_dict() for f in m.factors],
    }


def fingerprint(loaded: LoadedActionType) -> str:
    body = json.dumps(methodology_payload(loaded), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{loaded.code}\n{body}".encode()).hexdigest()


async def register_version(conn: AsyncConnection, loaded: LoadedActionType, *, now: datetime) -> int:
    """The id of ``loaded``'s current methodology version, inserting it (PENDING, with a SUBMITTED history
    row) when no process has seen it before. Safe in concurrent processes: the insert is ON CONFLICT DO
    NOTHING on (code, fingerprint), and on PostgreSQL one advisory lock per code serialises numbering."""
    fp = fingerprint(loaded)
    found = (await conn.execute(select(V.c.id).where(V.c.plugin_code == loaded.code, V.c.fingerprint == fp))).first()
    if found is not None:
        return int(found.id)
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"jingtan.methodology:{loaded.code}"))))
    number = int((await conn.execute(
        select(func.coalesce(func.max(V.c.version_no), 0)).where(V.c.plugin_code == loaded.code)
    )).scalar_one()) + 1
    payload = methodology_payload(loaded)
    stmt = dialect_insert(conn, V).values(
        plugin_code=loaded.code, version_no=number, fingerprint=fp, plugin=loaded.plugin[:100],
        plugin_version=loaded.action_type.version[:32], distribution_version=(loaded.distribution_version or "")[:64],
        title=payload["title"], reference=payload["reference"], text=payload["text"],
        factors=json.dumps(payload["factors"], ensure_ascii=False), status=PENDING, created_at=now,
    ).on_conflict_do_nothing(index_elements=["plugin_code", "fingerprint"])
    new_id = (await conn.execute(stmt.returning(V.c.id))).scalar_one_or_none()
    if new_id is None:  # another process registered it between our read and insert
        return int((await conn.execute(
            select(V.c.id).where(V.c.plugin_code == loaded.code, V.c.fingerprint == fp)
        )).scalar_one())
    await conn.execute(R.insert().values(
        version_id=new_id, event=SUBMITTED, actor_user_id=None, created_at=now,
        note=f"First run by plugin {loaded.plugin} {loaded.action_type.version}"[:500],
    ))
    return int(new_id)


_VERSIONS_ATTR = "_methodology_version_ids"


async def ensure_versions(app: "Services", *, now: datetime) -> dict[str, int]:
    """{action type code: id of its current methodology version} for this app, registering the versions
    once per app (the plugin host and its settings only change on restart)."""
    host: PluginHost = app.plugins
    cached: dict[str, int] | None = getattr(host, _VERSIONS_ATTR, None)
    if cached is not None and set(cached) == set(host.action_types):
        return cached

    ids = await register_host(app.db, host, now=now)
    setattr(host, _VERSIONS_ATTR, ids)
    return ids


async def register_host(db: Database, host: PluginHost, *, now: datetime) -> dict[str, int]:
    """Register the current version of every action type of ``host`` (one write transaction)."""

    async def work(conn: AsyncConnection) -> dict[str, int]:
        return {code: await register_version(conn, loaded, now=now) for code, loaded in sorted(host.action_types.items())}

    return await db.write(work)


async def version_gate(conn: AsyncConnection, version_id: int) -> bool:
    """Whether the version is APPROVED, read inside the caller's write transaction (``FOR SHARE`` on
    PostgreSQL: a concurrent decision waits for this transaction)."""
    q = select(V.c.status).where(V.c.id == version_id)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(read=True)
    return (await conn.execute(q)).scalar_one_or_none() == APPROVED


@dataclass(frozen=True)
class Decision:
    version_id: int
    plugin_code: str
    status: str


async def decide(
    app: "Services", *, actor_user_id: int, version_id: int, decision: str, note: str, now: datetime,
    request_id: str | None,
) -> Decision:
    """An expert's decision on one version (audited). Raises NotFound or MethodologyNotReviewable."""
    note = audit.validate_reason(note)
    if decision not in DECISIONS:
        raise NotFound("Unknown decision / 未知决定", field="decision")
    allowed, target = DECISIONS[decision]

    async def work(conn: AsyncConnection) -> Decision:
        row = (await conn.execute(select(V.c.id, V.c.plugin_code, V.c.status).where(V.c.id == version_id))).first()
        if row is None:
            raise NotFound("No such methodology version / 方法学版本不存在", field="versionId")
        done = (await conn.execute(
            update(V).where(V.c.id == version_id, V.c.status.in_(allowed))
            .values(status=target, decided_by=actor_user_id, decided_at=now, decision_note=note)
            .returning(V.c.id)
        )).scalar_one_or_none()
        if done is None:
            current = (await conn.execute(select(V.c.status).where(V.c.id == version_id))).scalar_one()
            raise MethodologyNotReviewable(
                f"This version is {current}; {decision.lower()} needs {' or '.join(allowed)} "
                f"/ 该版本状态为 {current}，无法执行此操作",
                field="versionId",
            )
        await conn.execute(R.insert().values(
            version_id=version_id, event=target, actor_user_id=actor_user_id, note=note, created_at=now
        ))
        await audit.record(
            conn, actor_user_id=actor_user_id, action=f"methodology.{decision.lower()}",
            target_type="MethodologyVersion", target_id=version_id, reason=note,
            details={"actionType": row.plugin_code, "from": row.status, "to": target},
            request_id=request_id, now=now,
        )
        return Decision(version_id=version_id, plugin_code=row.plugin_code, status=target)

    return await app.db.write(work)


# --- reads ------------------------------------------------------------------------------------------


def _where(stmt: Any, *, plugin_code: str | None, status: str | None) -> Any:
    if plugin_code is not None:
        stmt = stmt.where(V.c.plugin_code == plugin_code)
    if status is not None:
        stmt = stmt.where(V.c.status == status)
    return stmt


async def versions_page(conn: AsyncConnection, args: PageArgs, *, plugin_code: str | None = None,
                        status: str | None = None) -> Page:
    """Oldest first (the registry's order of filing), keyset on id."""
    return await keyset_page(conn, _where(select(V), plugin_code=plugin_code, status=status), [(V.c.id, False)], args)


async def count_versions(conn: AsyncConnection, *, plugin_code: str | None = None, status: str | None = None) -> int:
    q = _where(select(func.count()).select_from(V), plugin_code=plugin_code, status=status)
    return int((await conn.execute(q)).scalar_one())


async def versions_by_ids(conn: AsyncConnection, ids: list[int]) -> dict[int, dict]:
    if not ids:
        return {}
    rows = (await conn.execute(select(V).where(V.c.id.in_(ids)))).all()
    return {r.id: dict(r._mapping) for r in rows}


async def reviews_of(conn: AsyncConnection, version_ids: list[int]) -> dict[int, list[dict]]:
    """Review history of each version, oldest first, with the reviewer's display name."""
    out: dict[int, list[dict]] = {v: [] for v in version_ids}
    if not version_ids:
        return out
    rows = (await conn.execute(
        select(R, U.c.display_name).select_from(R.outerjoin(U, U.c.id == R.c.actor_user_id))
        .where(R.c.version_id.in_(version_ids)).order_by(R.c.version_id, R.c.id)
    )).all()
    for r in rows:
        out[r.version_id].append(dict(r._mapping))
    return out


async def totals_of(conn: AsyncConnection, version_ids: list[int]) -> dict[int, dict[str, int]]:
    """Per version: grams and points credited (APPROVED actions calculated with it), actions credited, and
    actions waiting in PENDING_METHODOLOGY."""
    out = {v: {"grams": 0, "points": 0, "credited": 0, "waiting": 0} for v in version_ids}
    if not version_ids:
        return out
    rows = (await conn.execute(
        select(A.c.methodology_version_id, A.c.status, func.count(), func.coalesce(func.sum(A.c.grams_co2e), 0),
               func.coalesce(func.sum(A.c.points), 0))
        .where(A.c.methodology_version_id.in_(version_ids), A.c.status.in_(["APPROVED", "PENDING_METHODOLOGY"]))
        .group_by(A.c.methodology_version_id, A.c.status)
    )).all()
    for version_id, status, n, grams, points in rows:
        if status == "APPROVED":
            out[version_id].update(grams=int(grams), points=int(points), credited=int(n))
        else:
            out[version_id]["waiting"] = int(n)
    return out
