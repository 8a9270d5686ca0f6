"""Images in the schema: ``requestImageUpload`` (a signed upload URL) and ``logo``/``cover`` on
``Merchant`` and ``Offer``.

Why a signed upload endpoint and not a GraphQL multipart mutation: the bytes never pass through the
GraphQL request pipeline (JSON parsing, NUL refusal, persisted operations, batching, cost limits), the
upload endpoint needs no session cookie or token (the grant is the credential, valid for
``merchants.upload_ttl_seconds``, for one slot of one merchant or offer), and there is no multipart
parser to enable on the GraphQL endpoint, which strawberry keeps off by default because multipart
requests are "simple" requests browsers send cross-site (CSRF)."""

from datetime import datetime
from enum import Enum

import strawberry
from strawberry.types import Info

from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.graphql.mutations import error_code_enum, payload_mutation, user_error_type
from jingtan_api.graphql.relay import UserError, from_global_id, parse_pk
from jingtan_api.errors import NotFound, PermissionDenied
from jingtan_api.media import service
from jingtan_api.merchants.types import Merchant, can_manage
from jingtan_api.offers.loaders import offers as offers_loader
from jingtan_api.offers.types import Offer


@strawberry.enum(description="Which image of a merchant or offer. / 图片位置。")
class ImageSlot(Enum):
    LOGO = strawberry.enum_value("LOGO", description="Square logo. / 标志。")
    COVER = strawberry.enum_value("COVER", description="Wide cover image. / 封面图。")


@strawberry.type(description="An uploaded image; its URL contains its content hash and never changes. / 图片。")
class Image:
    url: str = strawberry.field(description="Path of the image on this server (/media/<sha256>.<ext>), cacheable forever. / 图片地址。")
    content_type: str = strawberry.field(description="image/png, image/jpeg or image/webp. / 类型。")
    width: int = strawberry.field(description="Pixels. / 宽度。")
    height: int = strawberry.field(description="Pixels. / 高度。")
    size_bytes: int = strawberry.field(description="Bytes. / 大小。")

    @classmethod
    def from_row(cls, row: dict) -> "Image":
        return cls(url=service.url_of(row), content_type=row["content_type"], width=row["width"], height=row["height"],
                   size_bytes=row["size_bytes"])


def images_loader(info: Info):
    ctx = info.context
    return ctx.loader("media_images", lambda keys: ctx.read(service.images_of, keys))


async def _image(info: Info, owner_type: str, owner_id: int, slot: str) -> Image | None:
    images = await images_loader(info).load((owner_type, owner_id)) or {}
    row = images.get(slot)
    return Image.from_row(row) if row else None


@strawberry.input(description="Ask for a URL to upload a logo or cover (staff of the merchant or admin). / 申请图片上传链接。")
class RequestImageUploadInput:
    owner_id: strawberry.ID = strawberry.field(description="A Merchant or an Offer. / 商户或优惠。")
    slot: ImageSlot = strawberry.field(description="LOGO or COVER. / 图片位置。")


MediaErrorCode = error_code_enum("MediaErrorCode", (), description="Codes of requestImageUpload's userErrors. / 图片错误代码。")
MediaError = user_error_type("MediaError", MediaErrorCode, description="Why requestImageUpload failed. / 图片上传错误。")


@strawberry.type(description="Result of `requestImageUpload`: POST the raw image bytes to `uploadUrl`. / 上传链接。")
class ImageUploadPayload:
    upload_url: str | None = strawberry.field(default=None, description="Path to POST the image to (raw bytes; PNG, JPEG or WebP). / 上传地址。")
    expires_at: datetime | None = strawberry.field(default=None, description="The URL works until then. / 有效期至。")
    max_bytes: int | None = strawberry.field(default=None, description="Largest accepted upload. / 最大字节数。")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed.")
    errors: list[MediaError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")


@strawberry.type
class MediaMutation:
    @payload_mutation(description="A short-lived signed URL to upload a logo or cover of a merchant or offer. / 申请图片上传链接。")
    async def request_image_upload(self, info: Info, input: RequestImageUploadInput) -> ImageUploadPayload:
        ctx = info.context
        user_id = ctx.viewer.require_user()
        type_name, raw = from_global_id(input.owner_id, field="ownerId")
        pk = parse_pk(raw)
        if type_name not in ("Merchant", "Offer") or pk is None:
            raise NotFound("No such merchant or offer / 商户或优惠不存在", field="ownerId")
        merchant_id = pk
        if type_name == "Offer":
            offer = await offers_loader(info).load(pk)
            if offer is None:
                raise NotFound("No such merchant or offer / 商户或优惠不存在", field="ownerId")
            merchant_id = offer["merchant_id"]
        if not await can_manage(info, merchant_id, "offers:write"):
            raise PermissionDenied("Only the merchant's staff and admins / 仅商户员工与管理员")
        cfg = ctx.settings.merchants
        grant = service.new_grant(owner_type=type_name.upper(), owner_id=pk, slot=input.slot.value, user_id=user_id,
                                  now=ctx.now(), ttl_seconds=cfg.upload_ttl_seconds)
        token = service.sign_grant(grant, ctx.settings.secret_key)
        return ImageUploadPayload(upload_url=f"/media/uploads/{token}", expires_at=grant.expires_at,
                                  max_bytes=cfg.media_max_bytes)


@strawberry.type
class MerchantImages:
    @strawberry.field(description="Logo. / 标志。")
    async def logo(self: Merchant, info: Info) -> Image | None:
        return await _image(info, "MERCHANT", self.pk, "LOGO")

    @strawberry.field(description="Cover image. / 封面图。")
    async def cover(self: Merchant, info: Info) -> Image | None:
        return await _image(info, "MERCHANT", self.pk, "COVER")


@strawberry.type
class OfferImages:
    @strawberry.field(description="Logo (uploaded; see also imageUrl). / 标志。")
    async def logo(self: Offer, info: Info) -> Image | None:
        return await _image(info, "OFFER", self.pk, "LOGO")

    @strawberry.field(description="Cover image (uploaded). / 封面图。")
    async def cover(self: Offer, info: Info) -> Image | None:
        return await _image(info, "OFFER", self.pk, "COVER")


@hookimpl
def jingtan_register_domain() -> Domain:
    return Domain(
        name="media",
        mutation=[MediaMutation],
        types=[Image],
        extends={"Merchant": [MerchantImages], "Offer": [OfferImages]},
    )
