"""Green-merchant certification (绿色商户认证): levels granted after an audit (no GraphQL here).

An admin records an audit with the level it grants (BRONZE, SILVER, GOLD; NONE revokes) and notes; the
latest audit is the merchant's level, shown on the merchant and on its offers, until ``valid_until``
(then the merchant shows no level until audited again). Every audit is kept and audit-logged. Volunteer
auditors are not supported yet: the volunteers' role check is not on main (docs/merchants.md).
"""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.audit import service as audit
from jingtan_api.errors import ValidationFailed
from jingtan_api.merchants.models import MerchantCertification
from jingtan_api.merchants.service import clean_text, merchant_row

MC = MerchantCertification.__table__

LEVELS = ("NONE", "BRONZE", "SILVER", "GOLD")
MAX_VALID_DAYS = 3 * 366


async def certify(conn: AsyncConnection, *, auditor_user_id: int, merchant_id: int, level: str, notes: Any,
                  valid_days: Any, now: datetime, request_id: str | None = None) -> int:
    await merchant_row(conn, merchant_id)
    if level not in LEVELS:
        raise ValidationFailed("Unknown level / 未知认证等级", field="level")
    notes = clean_text(notes, "notes", max_len=1000, required=True, multiline=True)
    valid_until = None
    if valid_days is not None:
        if isinstance(valid_days, bool) or not isinstance(valid_days, int) or not 1 <= valid_days <= MAX_VALID_DAYS:
            raise ValidationFailed(f"validDays must be 1-{MAX_VALID_DAYS} / 有效天数须在 1 到 {MAX_VALID_DAYS} 之间",
                                   field="validDays")
        valid_until = now + timedelta(days=valid_days)
    cert_id = (
        await conn.execute(
            insert(MC).values(merchant_id=merchant_id, level=level, auditor_user_id=auditor_user_id, notes=notes,
                              valid_until=valid_until, created_at=now).returning(MC.c.id)
        )
    ).scalar_one()
    await audit.record(
        conn, actor_user_id=auditor_user_id, action="merchant.certify", target_type="Merchant", target_id=merchant_id,
        reason=notes[:500], details={"level": level, "validUntil": valid_until.isoformat() if valid_until else None},
        request_id=request_id, now=now,
    )
    return cert_id


async def current_certifications(conn: AsyncConnection, merchant_ids: Sequence[int]) -> dict[int, dict]:
    """{merchant: its latest audit row} (one statement)."""
    latest = (
        select(func.max(MC.c.id).label("id")).where(MC.c.merchant_id.in_(list(merchant_ids)))
        .group_by(MC.c.merchant_id).subquery()
    )
    rows = await conn.execute(select(MC).join(latest, latest.c.id == MC.c.id))
    return {r.merchant_id: dict(r._mapping) for r in rows}
