"""Idempotency keys: one effect per (scope, key) (docs/ledger.md "Idempotency").

Inside a write transaction a mutation calls :func:`claim` first. If the key is new, a record is inserted
(``INSERT … ON CONFLICT DO NOTHING`` — a concurrent twin waits for the first to commit, then sees its row)
and the mutation proceeds, finishing with :func:`complete`. If the key was used with the same request,
the stored result is returned; with a different request, :class:`IdempotencyConflict` is raised.
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.accounts.models import IdempotencyRecord
from jingtan_api.db import dialect_insert_for, utcnow
from jingtan_api.driver import DriverStatement
from jingtan_api.errors import IdempotencyConflict, ValidationFailed

T = IdempotencyRecord.__table__
MAX_KEY_LENGTH = 128


def request_hash(payload: Any) -> str:
    """Stable hash of a request's meaningful input (dict keys sorted, no whitespace)."""
    data = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()


def validate_key(key: str | None, *, field: str = "idempotencyKey") -> str:
    if key is None or not key.strip():
        raise ValidationFailed("idempotencyKey is required / 需要幂等键", field=field)
    key = key.strip()
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationFailed(
            f"idempotencyKey must be 1-{MAX_KEY_LENGTH} printable characters / 幂等键格式无效", field=field
        )
    return key


@dataclass(frozen=True)
class Claim:
    record_id: int | None
    """Set when this request owns the key and must do the work."""
    result_type: str | None = None
    result_id: int | None = None
    """Set when the key was already used by an identical request."""

    @property
    def is_replay(self) -> bool:
        return self.record_id is None


# Every mutation with a key claims and completes one record: both on the driver path (jingtan_api.driver).
_CLAIMS = {
    dialect: DriverStatement(
        dialect_insert_for(dialect, T)
        .values(scope=bindparam("scope"), key=bindparam("key"), request_hash=bindparam("request_hash"),
                result_type="", created_at=bindparam("created_at"))
        .on_conflict_do_nothing(index_elements=["scope", "key"])
        .returning(T.c.id))
    for dialect in ("postgresql", "sqlite")
}
_COMPLETE = DriverStatement(
    update(T).where(T.c.id == bindparam("record_id"))
    .values(result_type=bindparam("result_type"), result_id=bindparam("result_id")))


async def claim(conn: AsyncConnection, scope: str, key: str, req_hash: str) -> Claim:
    claimed = await _CLAIMS[conn.dialect.name].all(
        conn, {"scope": scope, "key": key, "request_hash": req_hash, "created_at": utcnow()})
    if claimed:
        return Claim(record_id=claimed[0]["id"])
    row = (
        await conn.execute(
            select(T.c.request_hash, T.c.result_type, T.c.result_id).where(T.c.scope == scope, T.c.key == key)
        )
    ).one()
    if row.request_hash != req_hash:
        raise IdempotencyConflict(
            "This idempotencyKey was already used with a different input / 该幂等键已用于不同的请求",
            field="idempotencyKey",
        )
    return Claim(record_id=None, result_type=row.result_type, result_id=row.result_id)


async def complete(conn: AsyncConnection, claim_: Claim, result_type: str, result_id: int) -> None:
    await _COMPLETE.all(conn, {"record_id": claim_.record_id, "result_type": result_type, "result_id": result_id})
