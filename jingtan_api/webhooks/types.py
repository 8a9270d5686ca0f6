"""GraphQL types of webhooks, and who may manage an endpoint.

An endpoint without a merchant is the platform's (admins); a merchant's endpoint is managed by that
merchant's staff and by admins. API tokens additionally need the ``webhooks:write`` scope. The signing
secret is never a field: it is returned once by ``createWebhookEndpoint`` and ``rotateWebhookSecret``.
"""

from datetime import datetime
from enum import Enum

import strawberry
from strawberry.types import Info

from jingtan_api.errors import PermissionDenied
from jingtan_api.graphql.mutations import error_code_enum, user_error_type
from jingtan_api.graphql.relay import Connection, Node, UserError, build_connection, page_args
from jingtan_api.merchants import loaders as merchant_loaders
from jingtan_api.merchants.types import Merchant, can_manage
from jingtan_api.webhooks import service

SCOPE = "webhooks:write"

# --- enums -------------------------------------------------------------------------------------------


@strawberry.enum(description="What a webhook can be sent for (the `type` of the payload and the "
                 "Jingtan-Event-Type header, e.g. `redemption.confirmed`). / Webhook 事件类型。")
class WebhookEventType(Enum):
    USER_REGISTERED = strawberry.enum_value("user.registered", description="A user registered (platform). / 用户注册（平台）。")
    ACTION_RECORDED = strawberry.enum_value("action.recorded", description="A low-carbon action was submitted (platform). / 提交了低碳行为（平台）。")
    ACTION_REVIEWED = strawberry.enum_value("action.reviewed", description="An action was reviewed (platform). / 行为已审核（平台）。")
    ACTION_APPROVED = strawberry.enum_value("action.approved", description="An action was approved and credited (platform). / 行为已通过（平台）。")
    LEDGER_POSTED = strawberry.enum_value("ledger.posted", description="A points transaction was posted (platform). / 积分交易已入账（平台）。")
    MERCHANT_APPLIED = strawberry.enum_value("merchant.applied", description="A merchant applied (platform and the merchant). / 商户提交申请。")
    REDEMPTION_CREATED = strawberry.enum_value("redemption.created", description="An offer was redeemed (the merchant's). / 兑换已创建。")
    REDEMPTION_CONFIRMED = strawberry.enum_value("redemption.confirmed", description="A code was confirmed at the counter. / 兑换已核销。")
    REDEMPTION_CANCELLED = strawberry.enum_value("redemption.cancelled", description="A redemption was cancelled. / 兑换已取消。")
    REDEMPTION_EXPIRED = strawberry.enum_value("redemption.expired", description="A redemption expired unused. / 兑换已过期。")


@strawberry.enum(description="Where a delivery stands. / 投递状态。")
class WebhookDeliveryStatus(Enum):
    PENDING = strawberry.enum_value("PENDING", description="Waiting for its next attempt. / 等待投递或重试。")
    SUCCEEDED = strawberry.enum_value("SUCCEEDED", description="The receiver answered 2xx. / 已成功投递。")
    FAILED = strawberry.enum_value("FAILED", description="Every attempt failed, or the endpoint was deleted. / 投递失败。")


# --- who may manage what -----------------------------------------------------------------------------


async def can_manage_endpoint(info: Info, merchant_id: int | None) -> bool:
    viewer = info.context.viewer
    if merchant_id is None:
        return viewer.user_id is not None and viewer.is_admin and SCOPE in viewer.scopes
    return await can_manage(info, merchant_id, SCOPE)


async def require_manage_endpoint(info: Info, merchant_id: int | None) -> None:
    info.context.viewer.require_user()
    if not await can_manage_endpoint(info, merchant_id):
        raise PermissionDenied("You may not manage these webhooks / 您无权管理这些 Webhook")


def endpoints_loader(info: Info):
    ctx = info.context
    return ctx.loader("webhook_endpoints", lambda keys: ctx.read(service.endpoints_by_ids, keys))


def deliveries_loader(info: Info):
    ctx = info.context
    return ctx.loader("webhook_deliveries", lambda keys: ctx.read(service.deliveries_by_ids, keys))


def attempts_loader(info: Info):
    ctx = info.context
    return ctx.loader("webhook_attempts", lambda keys: ctx.read(service.attempts_of, keys))


async def visible_endpoints(info: Info, pks: list[int]) -> dict[int, "WebhookEndpoint"]:
    rows = [r for r in await endpoints_loader(info).load_many(pks) if r is not None]
    return {r["id"]: WebhookEndpoint.from_row(r) for r in rows if await can_manage_endpoint(info, r["merchant_id"])}


async def visible_deliveries(info: Info, pks: list[int]) -> dict[int, "WebhookDelivery"]:
    rows = [r for r in await deliveries_loader(info).load_many(pks) if r is not None]
    endpoints = await visible_endpoints(info, sorted({r["endpoint_id"] for r in rows}))
    return {r["id"]: WebhookDelivery.from_row(r) for r in rows if r["endpoint_id"] in endpoints}


# --- object types ------------------------------------------------------------------------------------


@strawberry.type(description="One POST of a delivery and what came of it. / 一次投递尝试。")
class WebhookAttempt:
    number: int = strawberry.field(description="1 for the first attempt (restarts at 1 after a replay). / 第几次尝试。")
    status_code: int | None = strawberry.field(description="HTTP status the receiver answered; null when no answer. / HTTP 状态码。")
    error: str | None = strawberry.field(description="Why there was no answer: `timeout`, a connection error, `UNSAFE_ADDRESS: …`. / 错误。")
    duration_ms: int = strawberry.field(description="How long the attempt took, in milliseconds. / 耗时（毫秒）。")
    started_at: datetime = strawberry.field(description="When the attempt started. / 开始时间。")
    response_body: str = strawberry.field(description="Start of the receiver's answer (truncated). / 响应内容（截断）。")

    @classmethod
    def from_row(cls, row: dict) -> "WebhookAttempt":
        return cls(number=row["number"], status_code=row["status_code"], error=row["error"],
                   duration_ms=row["duration_ms"], started_at=row["started_at"], response_body=row["response_body"])


@strawberry.type(description="One event for one endpoint: the outbox row and its attempts. / 一次 Webhook 投递。")
class WebhookDelivery(Node):
    event_id: str = strawberry.field(description="Idempotency id (Jingtan-Event-Id), the same on every retry and replay. / 事件 ID（幂等）。")
    event_type: WebhookEventType = strawberry.field(description="What happened. / 事件类型。")
    status: WebhookDeliveryStatus = strawberry.field(description="Where the delivery stands. / 状态。")
    attempt_count: int = strawberry.field(description="Attempts since creation or the last replay. / 尝试次数。")
    next_attempt_at: datetime | None = strawberry.field(description="When the next attempt is due (PENDING only). / 下次尝试时间。")
    last_status_code: int | None = strawberry.field(description="HTTP status of the last attempt. / 最近一次状态码。")
    last_error: str | None = strawberry.field(description="Error of the last attempt, or ENDPOINT_DELETED. / 最近一次错误。")
    payload: str = strawberry.field(description="The exact JSON body that is signed and posted. / 投递的 JSON 内容。")
    created_at: datetime = strawberry.field(description="When the event happened. / 创建时间。")
    updated_at: datetime = strawberry.field(description="Last change. / 更新时间。")
    endpoint_pk: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: dict) -> "WebhookDelivery":
        return cls(
            pk=row["id"], event_id=row["event_id"], event_type=WebhookEventType(row["event_type"]),
            status=WebhookDeliveryStatus(row["status"]), attempt_count=row["attempts"],
            next_attempt_at=row["next_attempt_at"] if row["status"] == "PENDING" else None,
            last_status_code=row["last_status_code"], last_error=row["last_error"], payload=row["payload"],
            created_at=row["created_at"], updated_at=row["updated_at"], endpoint_pk=row["endpoint_id"],
        )

    @strawberry.field(description="Every attempt, first first (earlier rounds before a replay included). / 全部尝试。")
    async def attempts(self, info: Info) -> list[WebhookAttempt]:
        return [WebhookAttempt.from_row(r) for r in await attempts_loader(info).load(self.pk) or []]

    @strawberry.field(description="The endpoint it is for. / 所属端点。")
    async def endpoint(self, info: Info) -> "WebhookEndpoint | None":
        return (await visible_endpoints(info, [self.endpoint_pk])).get(self.endpoint_pk)


@strawberry.type(description="A page of deliveries. / 投递分页。")
class WebhookDeliveryConnection(Connection[WebhookDelivery]):
    pass


@strawberry.type(description="A URL that receives signed POSTs for the chosen event types. The secret is never "
                 "readable here. / 接收签名回调的网址（不含密钥）。")
class WebhookEndpoint(Node):
    url: str = strawberry.field(description="Where events are posted. / 回调网址。")
    event_types: list[WebhookEventType] = strawberry.field(description="Events it receives. / 订阅的事件。")
    description: str = strawberry.field(description="Free text for the owner. / 说明。")
    enabled: bool = strawberry.field(description="False: new events are not queued and pending ones wait. / 是否启用。")
    created_at: datetime = strawberry.field(description="When it was registered. / 创建时间。")
    updated_at: datetime = strawberry.field(description="Last change. / 更新时间。")
    deleted_at: datetime | None = strawberry.field(description="When it was deleted (it then receives nothing). / 删除时间。")
    merchant_pk: strawberry.Private[int | None]

    @classmethod
    def from_row(cls, row: dict) -> "WebhookEndpoint":
        return cls(
            pk=row["id"], url=row["url"], event_types=[WebhookEventType(t) for t in row["event_types"].split(",") if t],
            description=row["description"], enabled=row["active"], created_at=row["created_at"],
            updated_at=row["updated_at"], deleted_at=row["deleted_at"], merchant_pk=row["merchant_id"],
        )

    @strawberry.field(description="The merchant whose events it receives; null for a platform endpoint. / 所属商户。")
    async def merchant(self, info: Info) -> Merchant | None:
        if self.merchant_pk is None:
            return None
        row = await merchant_loaders.merchants(info).load(self.merchant_pk)
        return Merchant.from_row(row) if row else None

    @strawberry.field(description="Its deliveries, newest first, optionally of one status. / 投递记录（新的在前）。")
    async def deliveries(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None, status: WebhookDeliveryStatus | None = None,
    ) -> WebhookDeliveryConnection:
        ctx = info.context
        args = page_args(info, first, after, last, before)
        value = status.value if status is not None else None
        page = await ctx.read(service.deliveries_page, args, endpoint_id=self.pk, status=value)
        return build_connection(page, WebhookDelivery.from_row, type_=WebhookDeliveryConnection,
                                count=lambda: ctx.read(service.deliveries_count, endpoint_id=self.pk, status=value))


@strawberry.type(description="A page of webhook endpoints. / Webhook 端点分页。")
class WebhookEndpointConnection(Connection[WebhookEndpoint]):
    pass


# --- inputs and payloads -----------------------------------------------------------------------------


@strawberry.input(description="Register an endpoint: a platform one (admins) or a merchant's (its staff). / 注册回调端点。")
class CreateWebhookEndpointInput:
    url: str = strawberry.field(description="http(s) URL; in production not on a private or loopback address. / 回调网址。")
    event_types: list[WebhookEventType] = strawberry.field(
        description="At least one; a merchant's endpoint only its merchant's events (merchant.applied, redemption.*). / 订阅事件。"
    )
    merchant_id: strawberry.ID | None = strawberry.field(
        default=None, description="The merchant whose events it receives; omit for a platform endpoint (admins). / 商户。"
    )
    description: str = strawberry.field(default="", description="Free text, up to 500 characters. / 说明。")


@strawberry.input(description="Change an endpoint; omitted fields stay. / 修改回调端点。")
class UpdateWebhookEndpointInput:
    id: strawberry.ID = strawberry.field(description="The endpoint. / 端点。")
    url: str | None = strawberry.field(default=None, description="New URL. / 新网址。")
    event_types: list[WebhookEventType] | None = strawberry.field(default=None, description="New event types. / 新的订阅事件。")
    description: str | None = strawberry.field(default=None, description="New description. / 新说明。")
    enabled: bool | None = strawberry.field(default=None, description="Pause (false) or resume (true). / 停用或启用。")


@strawberry.input(description="Delete an endpoint (its delivery history stays readable). / 删除回调端点。")
class DeleteWebhookEndpointInput:
    id: strawberry.ID = strawberry.field(description="The endpoint. / 端点。")


@strawberry.input(description="Replace an endpoint's signing secret. / 更换签名密钥。")
class RotateWebhookSecretInput:
    id: strawberry.ID = strawberry.field(description="The endpoint. / 端点。")


@strawberry.input(description="Deliver a SUCCEEDED or FAILED delivery again, with the same event id. / 重新投递。")
class ReplayWebhookDeliveryInput:
    id: strawberry.ID = strawberry.field(description="The delivery. / 投递。")


WebhookErrorCode = error_code_enum(
    "WebhookErrorCode", ("INVALID_URL", "UNSAFE_ADDRESS", "UNRESOLVABLE_HOST", "NO_EVENT_TYPES", "UNKNOWN_EVENT_TYPE"),
    description="Codes of the webhook mutations' userErrors. / Webhook 错误代码。",
)
WebhookError = user_error_type("WebhookError", WebhookErrorCode, description="Why a webhook mutation failed. / Webhook 操作失败原因。")


@strawberry.type(description="Result of `createWebhookEndpoint`. / 注册端点的结果。")
class CreateWebhookEndpointPayload:
    endpoint: WebhookEndpoint | None = strawberry.field(default=None, description="The new endpoint. / 新端点。")
    secret: str | None = strawberry.field(
        default=None, description="Signing secret (whsec_…): shown only here, keep it safe. / 签名密钥（仅显示一次）。"
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed. / 失败原因。")
    errors: list[WebhookError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")


@strawberry.type(description="Result of `updateWebhookEndpoint` and `deleteWebhookEndpoint`. / 端点操作结果。")
class WebhookEndpointPayload:
    endpoint: WebhookEndpoint | None = strawberry.field(default=None, description="The endpoint. / 端点。")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed. / 失败原因。")
    errors: list[WebhookError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")


@strawberry.type(description="Result of `rotateWebhookSecret`. / 更换密钥的结果。")
class RotateWebhookSecretPayload:
    endpoint: WebhookEndpoint | None = strawberry.field(default=None, description="The endpoint. / 端点。")
    secret: str | None = strawberry.field(default=None, description="The new secret: shown only here. / 新密钥（仅显示一次）。")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed. / 失败原因。")
    errors: list[WebhookError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")


@strawberry.type(description="Result of `replayWebhookDelivery`. / 重新投递的结果。")
class ReplayWebhookDeliveryPayload:
    delivery: WebhookDelivery | None = strawberry.field(default=None, description="The delivery, PENDING again. / 投递。")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed. / 失败原因。")
    errors: list[WebhookError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")
