"""``User.notifications``, ``User.unreadNotificationCount``, ``markNotificationsRead`` and the
``Notification`` node lookup (only the viewer's own notices)."""

from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from jingtan_api.errors import PermissionDenied
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.graphql.mutations import payload_mutation
from jingtan_api.graphql.relay import Connection, build_connection, decode_id, page_args
from jingtan_api.live.transport import events as live_events
from jingtan_api.notifications import service
from jingtan_api.notifications.types import (
    MarkNotificationsReadInput,
    MarkNotificationsReadPayload,
    Notification,
    timezone_of,
)
from jingtan_api.users.types import User


def _reader(info: Info) -> int:
    """The viewer reading their own notices (API tokens need account:read)."""
    viewer = info.context.viewer
    user_id = viewer.require_user()
    viewer.require_any_scope("account:read")
    return user_id


def _own(info: Info, user: User) -> int:
    user_id = _reader(info)
    if user.pk != user_id:
        raise PermissionDenied("Notifications are only for the member themselves / 通知仅本人可见")
    return user_id


@strawberry.type
class UserNotifications:
    """Fields of ``User`` from notifications (the user themselves only)."""

    @strawberry.field(description="Your notifications, newest first; unreadOnly: only those not marked read. / 我的通知。")
    async def notifications(
        self: User, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None, unread_only: bool = False,
    ) -> Connection[Notification]:
        user_id = _own(info, self)
        ctx = info.context
        args = page_args(info, first, after, last, before)
        page = await ctx.read(service.notifications_page, user_id, args, unread_only=unread_only)
        tz = timezone_of(info)
        return build_connection(
            page, lambda row: Notification.from_row(row, tz),
            count=lambda: ctx.read(service.notifications_count, user_id, unread_only=unread_only),
        )

    @strawberry.field(description="How many of your notifications are unread. / 未读通知数。")
    async def unread_notification_count(self: User, info: Info) -> int:
        return await info.context.read(service.unread_count, _own(info, self))


@strawberry.type
class NotificationsMutation:
    @payload_mutation(description="Mark your notifications read: the ids given (at most 100, all your own) or all of "
                      "them. / 标记通知为已读。")
    async def mark_notifications_read(self, info: Info, input: MarkNotificationsReadInput) -> MarkNotificationsReadPayload:
        ctx = info.context
        user_id = _reader(info)
        service.check_mark_input(input.ids, input.all)
        ids = [decode_id(gid, "Notification", field="ids") for gid in input.ids] if input.ids is not None else None
        marked = await ctx.db.write(
            lambda conn: service.mark_read(conn, user_id=user_id, ids=ids, all_=input.all, now=ctx.now()))
        return MarkNotificationsReadPayload(marked_count=marked.marked, unread_count=marked.unread)


@strawberry.type
class NotificationsSubscription:
    @strawberry.subscription(description="Your new notifications as they are created (review decisions, points and "
                             "redemption codes about to expire); what arrived while offline is in `notifications`. / 新通知推送。")
    async def notification_added(self, info: Info) -> AsyncGenerator[Notification, None]:
        user_id = _reader(info)
        async for message in live_events(info, [f"user:{user_id}"], ["notification.created"]):
            notification_id = message.get("notification_id")
            if message.get("user_id") != user_id or not isinstance(notification_id, int):
                continue
            rows = await info.context.read(service.notifications_by_ids, [notification_id], user_id=user_id)
            if notification_id in rows:
                yield Notification.from_row(rows[notification_id], timezone_of(info))


async def notification_nodes(info: Info, pks: list[int]) -> dict[int, Notification]:
    user_id = info.context.viewer.user_id
    if user_id is None:
        return {}
    rows = await info.context.read(service.notifications_by_ids, pks, user_id=user_id)
    tz = timezone_of(info)
    return {pk: Notification.from_row(row, tz) for pk, row in rows.items()}


@hookimpl
def jingtan_register_domain() -> Domain:
    return Domain(
        name="notifications",
        mutation=[NotificationsMutation],
        subscription=[NotificationsSubscription],
        types=[Notification],
        nodes={"Notification": notification_nodes},
        extends={"User": [UserNotifications]},
    )
