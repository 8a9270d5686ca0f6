"""GraphQL types of notifications: the notice (text in both languages), its kind, the mark-read input and payload."""

import json
from datetime import datetime
from enum import Enum
from zoneinfo import ZoneInfo

import strawberry
from strawberry.types import Info

from jingtan_api.graphql.mutations import error_code_enum, user_error_type
from jingtan_api.graphql.relay import Node, UserError, to_global_id
from jingtan_api.notifications import service


@strawberry.enum(description="What a notification is about. / 通知类型。")
class NotificationKind(Enum):
    REVIEW_DECISION = strawberry.enum_value(
        "REVIEW_DECISION", description="A reviewer approved or rejected one of your actions. / 行为审核结果。")
    POINTS_EXPIRING = strawberry.enum_value(
        "POINTS_EXPIRING", description="Some of your points expire within a few days. / 积分即将过期。")
    REDEMPTION_EXPIRING = strawberry.enum_value(
        "REDEMPTION_EXPIRING", description="An unused redemption code expires soon. / 兑换码即将过期。")


def timezone_of(info: Info) -> ZoneInfo:
    return ZoneInfo(info.context.settings.actions.timezone)


@strawberry.type(description="A notice to the viewer, read or unread. / 通知。")
class Notification(Node):
    kind: NotificationKind = strawberry.field(description="What it is about. / 通知类型。")
    title_zh: str = strawberry.field(description="中文标题。")
    title_en: str = strawberry.field(description="English title.")
    body_zh: str = strawberry.field(description="中文正文。")
    body_en: str = strawberry.field(description="English text.")
    points: int | None = strawberry.field(
        description="Points it is about (credited, expiring, or held by the redemption). / 涉及的积分。")
    expires_at: datetime | None = strawberry.field(
        description="When the points or the redemption code expire (expiring kinds). / 过期时间。")
    created_at: datetime = strawberry.field(description="When it was created. / 创建时间。")
    read_at: datetime | None = strawberry.field(description="When it was marked read (null: unread). / 已读时间。")
    _action_id: strawberry.Private[int | None]
    _redemption_id: strawberry.Private[int | None]

    @classmethod
    def from_row(cls, row: dict, tz: ZoneInfo) -> "Notification":
        params = json.loads(row["params"] or "{}")
        text = service.render(row["kind"], params, tz)
        expires = params.get("expires_at")
        return cls(
            pk=row["id"], kind=NotificationKind(row["kind"]), title_zh=text.title_zh, title_en=text.title_en,
            body_zh=text.body_zh, body_en=text.body_en,
            points=int(params["points"]) if "points" in params else None,
            expires_at=datetime.fromisoformat(expires) if expires else None,
            created_at=row["created_at"], read_at=row["read_at"],
            _action_id=row["action_id"], _redemption_id=row["redemption_id"],
        )

    @strawberry.field(description="Whether it was marked read. / 是否已读。")
    def read(self) -> bool:
        return self.read_at is not None

    @strawberry.field(description="The reviewed action's ID (REVIEW_DECISION; fetch it with node). / 相关行为 ID。")
    def action_id(self) -> strawberry.ID | None:
        return strawberry.ID(to_global_id("Action", self._action_id)) if self._action_id is not None else None

    @strawberry.field(description="The redemption's ID (REDEMPTION_EXPIRING; fetch it with node). / 相关兑换 ID。")
    def redemption_id(self) -> strawberry.ID | None:
        if self._redemption_id is None:
            return None
        return strawberry.ID(to_global_id("Redemption", self._redemption_id))


@strawberry.input(description="Mark notifications read: give `ids` or `all: true`, not both. / 标记通知为已读。")
class MarkNotificationsReadInput:
    ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Your notifications to mark read (at most 100). / 要标记的通知（最多 100 个）。")
    all: bool | None = strawberry.field(
        default=None, description="true: mark all your notifications read. / 全部标记为已读。")


NotificationErrorCode = error_code_enum(
    "NotificationErrorCode", ("TOO_MANY_IDS",),
    description="Codes of the notification mutations' errors. / 通知错误代码。",
)
NotificationError = user_error_type(
    "NotificationError", NotificationErrorCode, description="Why a notification mutation failed. / 通知操作错误。")


@strawberry.type(description="Result of markNotificationsRead. / 标记已读结果。")
class MarkNotificationsReadPayload:
    marked_count: int = strawberry.field(
        default=0, description="Notifications that were unread and are now read. / 本次标记的数量。")
    unread_count: int | None = strawberry.field(
        default=None, description="Your unread notifications afterwards (null on error). / 剩余未读数。")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed. / 错误。")
    errors: list[NotificationError] = strawberry.field(
        default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")
