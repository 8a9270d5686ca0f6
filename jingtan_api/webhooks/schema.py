"""Query and Mutation fields of webhooks, and ``Merchant.webhookEndpoints`` (docs/live.md, "Webhooks")."""

import strawberry
from strawberry.types import Info

from jingtan_api.auth.permissions import ADMIN
from jingtan_api.errors import NotFound
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.graphql.mutations import payload_mutation
from jingtan_api.graphql.relay import build_connection, decode_id, page_args
from jingtan_api.merchants import loaders as merchant_loaders
from jingtan_api.merchants.types import Merchant, decode_opt
from jingtan_api.webhooks import service
from jingtan_api.webhooks.types import (
    SCOPE,
    CreateWebhookEndpointInput,
    CreateWebhookEndpointPayload,
    DeleteWebhookEndpointInput,
    ReplayWebhookDeliveryInput,
    ReplayWebhookDeliveryPayload,
    RotateWebhookSecretInput,
    RotateWebhookSecretPayload,
    UpdateWebhookEndpointInput,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointConnection,
    WebhookEndpointPayload,
    deliveries_loader,
    endpoints_loader,
    require_manage_endpoint,
    visible_deliveries,
    visible_endpoints,
)


async def _managed_endpoint(info: Info, gid: strawberry.ID) -> dict:
    """The live (not deleted) endpoint ``gid`` if the viewer may manage it: NOT_FOUND when unknown or
    deleted, FORBIDDEN when it belongs to another merchant (or is a platform one and the viewer no admin)."""
    info.context.viewer.require_user()
    pk = decode_id(gid, "WebhookEndpoint", field="id")
    row = await info.context.read(service.endpoint_row, pk)
    if row is None:
        raise NotFound("Endpoint not found / 未找到端点", field="id")
    await require_manage_endpoint(info, row["merchant_id"])
    return row


async def _endpoint(info: Info, pk: int) -> WebhookEndpoint:
    loader = endpoints_loader(info)
    loader.clear_all()
    return WebhookEndpoint.from_row(await loader.load(pk))


@strawberry.type
class WebhooksQuery:
    @strawberry.field(description="Every webhook endpoint not deleted (platform and merchants'), newest first "
                      "(admins). / 全部 Webhook 端点（管理员）。")
    async def webhook_endpoints(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None,
    ) -> WebhookEndpointConnection:
        ctx = info.context
        ctx.viewer.require_role(ADMIN, scope=SCOPE)
        args = page_args(info, first, after, last, before)
        page = await ctx.read(service.endpoints_page, args, everything=True)
        return build_connection(page, WebhookEndpoint.from_row, type_=WebhookEndpointConnection,
                                count=lambda: ctx.read(service.endpoints_count, everything=True))


@strawberry.type
class WebhooksMutation:
    @payload_mutation(description="Register a webhook endpoint: a platform one (admins) or a merchant's (its staff, "
                      "that merchant's events only); returns the signing secret once (audit-logged). / 注册回调端点。")
    async def create_webhook_endpoint(self, info: Info, input: CreateWebhookEndpointInput) -> CreateWebhookEndpointPayload:
        ctx = info.context
        user_id = ctx.viewer.require_user()
        merchant_id = decode_opt(input.merchant_id, "Merchant", "merchantId")
        await require_manage_endpoint(info, merchant_id)
        if merchant_id is not None and await merchant_loaders.merchants(info).load(merchant_id) is None:
            raise NotFound("Merchant not found / 未找到商户", field="merchantId")
        row = await service.create_endpoint(
            ctx.services, url=input.url, event_types=[t.value for t in input.event_types], merchant_id=merchant_id,
            created_by=user_id, description=input.description, request_id=ctx.request_id,
        )
        return CreateWebhookEndpointPayload(endpoint=await _endpoint(info, row["id"]), secret=row["secret"])

    @payload_mutation(description="Change an endpoint's URL, event types, description, or pause/resume it "
                      "(audit-logged). / 修改回调端点。")
    async def update_webhook_endpoint(self, info: Info, input: UpdateWebhookEndpointInput) -> WebhookEndpointPayload:
        ctx = info.context
        row = await _managed_endpoint(info, input.id)
        await service.update_endpoint(
            ctx.services, row["id"], actor_user_id=ctx.viewer.user_id, url=input.url,
            event_types=None if input.event_types is None else [t.value for t in input.event_types],
            description=input.description, enabled=input.enabled, request_id=ctx.request_id,
        )
        return WebhookEndpointPayload(endpoint=await _endpoint(info, row["id"]))

    @payload_mutation(description="Delete an endpoint: it receives nothing more, its pending deliveries become FAILED, "
                      "its delivery history stays readable (audit-logged). / 删除回调端点。")
    async def delete_webhook_endpoint(self, info: Info, input: DeleteWebhookEndpointInput) -> WebhookEndpointPayload:
        ctx = info.context
        row = await _managed_endpoint(info, input.id)
        await service.delete_endpoint(ctx.services, row["id"], actor_user_id=ctx.viewer.user_id, request_id=ctx.request_id)
        return WebhookEndpointPayload(endpoint=await _endpoint(info, row["id"]))

    @payload_mutation(description="Replace an endpoint's signing secret; returns the new one once (audit-logged). "
                      "/ 更换签名密钥。")
    async def rotate_webhook_secret(self, info: Info, input: RotateWebhookSecretInput) -> RotateWebhookSecretPayload:
        ctx = info.context
        row = await _managed_endpoint(info, input.id)
        secret = await service.rotate_secret(ctx.services, row["id"], actor_user_id=ctx.viewer.user_id,
                                             request_id=ctx.request_id)
        return RotateWebhookSecretPayload(endpoint=await _endpoint(info, row["id"]), secret=secret)

    @payload_mutation(description="Deliver a SUCCEEDED or FAILED delivery again with the same event id "
                      "(audit-logged). / 重新投递。")
    async def replay_webhook_delivery(self, info: Info, input: ReplayWebhookDeliveryInput) -> ReplayWebhookDeliveryPayload:
        ctx = info.context
        ctx.viewer.require_user()
        pk = decode_id(input.id, "WebhookDelivery", field="id")
        delivery = await deliveries_loader(info).load(pk)
        if delivery is None:
            raise NotFound("Delivery not found / 未找到投递", field="id")
        endpoint = await endpoints_loader(info).load(delivery["endpoint_id"])
        await require_manage_endpoint(info, endpoint["merchant_id"])
        await service.replay(ctx.services, pk, actor_user_id=ctx.viewer.user_id, request_id=ctx.request_id)
        loader = deliveries_loader(info)
        loader.clear_all()
        return ReplayWebhookDeliveryPayload(delivery=WebhookDelivery.from_row(await loader.load(pk)))


@strawberry.type
class MerchantWebhooks:
    """Fields of ``Merchant`` from webhooks."""

    @strawberry.field(description="The merchant's webhook endpoints, newest first (its staff and admins). "
                      "/ 商户的 Webhook 端点（员工与管理员）。")
    async def webhook_endpoints(
        self: Merchant, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None,
    ) -> WebhookEndpointConnection:
        ctx = info.context
        await require_manage_endpoint(info, self.pk)
        args = page_args(info, first, after, last, before)
        page = await ctx.read(service.endpoints_page, args, merchant_id=self.pk)
        return build_connection(page, WebhookEndpoint.from_row, type_=WebhookEndpointConnection,
                                count=lambda: ctx.read(service.endpoints_count, merchant_id=self.pk))


@hookimpl
def jingtan_register_domain() -> Domain:
    return Domain(
        name="webhooks",
        query=[WebhooksQuery],
        mutation=[WebhooksMutation],
        types=[WebhookEndpoint, WebhookDelivery],
        nodes={"WebhookEndpoint": visible_endpoints, "WebhookDelivery": visible_deliveries},
        extends={"Merchant": [MerchantWebhooks]},
    )
