"""GraphQL types of the audit log."""

import json
from datetime import datetime

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from jingtan_api.graphql.relay import Node, to_global_id
from jingtan_api.users.types import User, user_by_id


# Keys of audit ``details`` that hold a database id, and the type of the object: shown as global IDs (the
# ones every query and mutation takes), for old entries too — the stored JSON keeps the raw id.
DETAIL_ID_TYPES: dict[str, str] = {
    "transactionId": "LedgerTransaction",
    "accountId": "Account",
    "userId": "User",
    "ownerUserId": "User",
    "applicantUserId": "User",
    "actionId": "Action",
    "merchantId": "Merchant",
    "offerId": "Offer",
    "redemptionId": "Redemption",
    "methodologyVersionId": "MethodologyVersion",
    "endpointId": "WebhookEndpoint",
}


def details_with_global_ids(details: dict) -> dict:
    """``{"transactionId": 17}`` -> ``{"transactionId": "TGVkZ2VyVHJhbnNhY3Rpb246MTc="}`` for the keys of
    :data:`DETAIL_ID_TYPES` (ints only; anything else is left as it is)."""
    out = {}
    for key, value in details.items():
        kind = DETAIL_ID_TYPES.get(key)
        if kind is not None and isinstance(value, int) and not isinstance(value, bool):
            value = to_global_id(kind, value)
        out[key] = value
    return out


@strawberry.type(description="One administrative action: who, what, when, why. / 审计日志。")
class AuditLogEntry(Node):
    action: str = strawberry.field(description="What was done, e.g. points.grant. / 操作。")
    target_type: str = strawberry.field(description="Type of the object acted on. / 对象类型。")
    target_id: strawberry.ID | None = strawberry.field(description="Global ID of the object acted on.")
    reason: str = strawberry.field(description="Why. / 原因。")
    details: JSON = strawberry.field(
        description="Details of the action (amounts, …); ids of objects are global IDs. / 详情（对象 ID 为全局 ID）。"
    )
    request_id: str | None = strawberry.field(description="Request that did it (for the logs).")
    created_at: datetime = strawberry.field(description="When. / 时间。")
    actor_pk: strawberry.Private[int | None]
    acting_admin_pk: strawberry.Private[int | None]

    @classmethod
    def from_row(cls, row: dict) -> "AuditLogEntry":
        target = row["target_id"]
        return cls(
            pk=row["id"],
            action=row["action"],
            target_type=row["target_type"],
            target_id=strawberry.ID(to_global_id(row["target_type"], target)) if target is not None else None,
            reason=row["reason"],
            details=details_with_global_ids(json.loads(row["details"] or "{}")),
            request_id=row["request_id"],
            created_at=row["created_at"],
            actor_pk=row["actor_user_id"],
            acting_admin_pk=row["acting_admin_id"],
        )

    @strawberry.field(description="Who did it. / 操作人。")
    async def actor(self, info: Info) -> User | None:
        return await user_by_id(info, self.actor_pk)

    @strawberry.field(
        description="The admin who created the API token the actor used, when it was made for the actor by "
        "another user; null otherwise. / 代为创建所用 API 令牌的管理员。"
    )
    async def acting_admin(self, info: Info) -> User | None:
        return await user_by_id(info, self.acting_admin_pk)
