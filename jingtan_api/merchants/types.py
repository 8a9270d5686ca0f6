"""GraphQL types of merchants, and who may see and manage a merchant.

``Merchant`` has only the merchants domain's own fields; the offers and redemptions domains add theirs
(``offers``, ``stats``, ``redemptions``, ``settlement``) as fragments.
"""

import json
from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.types import Info

from jingtan_api.errors import PermissionDenied
from jingtan_api.graphql.mutations import error_code_enum, user_error_type
from jingtan_api.graphql.relay import Node, UserError, decode_id
from jingtan_api.merchants import loaders, service
from jingtan_api.users.types import User, users_loader

# --- enums -------------------------------------------------------------------------------------------


@strawberry.enum(description="What kind of business a merchant is. / 商户类别。")
class MerchantCategory(Enum):
    CAFE = strawberry.enum_value("CAFE", description="Café. / 咖啡馆。")
    BIKE_SHOP = strawberry.enum_value("BIKE_SHOP", description="Bicycle shop or repair. / 自行车店。")
    TRANSIT = strawberry.enum_value("TRANSIT", description="Public transport operator. / 公共交通。")
    GROCERY = strawberry.enum_value("GROCERY", description="Grocery or market. / 生鲜超市。")
    SECOND_HAND = strawberry.enum_value("SECOND_HAND", description="Second-hand goods. / 二手商店。")
    RESTAURANT = strawberry.enum_value("RESTAURANT", description="Restaurant. / 餐厅。")
    OTHER = strawberry.enum_value("OTHER", description="Other. / 其他。")


@strawberry.enum(description="Lifecycle of a merchant. / 商户状态。")
class MerchantStatus(Enum):
    PENDING = strawberry.enum_value("PENDING", description="Applied, waiting for review. / 待审核。")
    ACTIVE = strawberry.enum_value("ACTIVE", description="Approved and trading. / 已启用。")
    REJECTED = strawberry.enum_value("REJECTED", description="Application rejected. / 已拒绝。")
    SUSPENDED = strawberry.enum_value("SUSPENDED", description="Suspended by the platform. / 已暂停。")


# --- who may see what --------------------------------------------------------------------------------


async def viewer_merchant_id(info: Info) -> int | None:
    """The merchant the viewer works for, read from the database (merchant_staff and the user's current
    roles), not from token claims: a user added as staff can act at once, and a user whose MERCHANT role
    an admin removed (setUserRoles) can no longer act for the merchant, even with an unexpired token."""
    user_id = info.context.viewer.user_id
    if user_id is None:
        return None
    user = await users_loader(info).load(user_id)
    if user is None or user["status"] != "ACTIVE" or "MERCHANT" not in user["roles"].split(","):
        return None
    return await loaders.staff_merchant(info).load(user_id)


async def can_manage(info: Info, merchant_id: int, scope: str) -> bool:
    """Admins and the merchant's staff; API tokens additionally need ``scope``."""
    viewer = info.context.viewer
    if viewer.user_id is None:
        return False
    if viewer.api_token_id is not None and scope not in viewer.scopes:
        return False
    if viewer.is_admin:
        return True
    return await viewer_merchant_id(info) == merchant_id


async def require_manage(info: Info, merchant_id: int, scope: str) -> None:
    info.context.viewer.require_user()
    if not await can_manage(info, merchant_id, scope):
        raise PermissionDenied()


async def actor_of(info: Info, scope: str) -> service.Actor:
    """The viewer as a merchant-side actor (staff membership is read from the database, so a user added
    as staff can act before their access token is refreshed; API tokens also need ``scope``)."""
    viewer = info.context.viewer
    user_id = viewer.require_user()
    if viewer.api_token_id is not None:
        viewer.require_scope(scope)
    return service.Actor(user_id=user_id, is_admin=viewer.is_admin, merchant_id=await viewer_merchant_id(info))


def merchant_visible(info: Info, row: dict, managed: bool) -> bool:
    viewer = info.context.viewer
    return row["status"] == service.ACTIVE or managed or viewer.is_admin or (
        viewer.user_id is not None and row["owner_user_id"] == viewer.user_id
    )


async def visible_merchants(info: Info, pks: list[int]) -> dict[int, "Merchant"]:
    rows = await loaders.merchants(info).load_many(pks)
    mine = await viewer_merchant_id(info)
    return {
        r["id"]: Merchant.from_row(r)
        for r in rows
        if r is not None and merchant_visible(info, r, r["id"] == mine)
    }


# --- object types ------------------------------------------------------------------------------------


@strawberry.type(description="A low-carbon merchant. / 低碳商户。")
class Merchant(Node):
    name_zh: str = strawberry.field(description="Chinese name. / 中文名称。")
    name_en: str = strawberry.field(description="English name (may be empty). / 英文名称。")
    category: MerchantCategory = strawberry.field(description="Kind of business. / 类别。")
    city: str = strawberry.field(description="City. / 城市。")
    district: str = strawberry.field(description="District. / 区。")
    address: str = strawberry.field(description="Street address. / 地址。")
    latitude: float | None = strawberry.field(description="WGS-84 latitude. / 纬度。")
    longitude: float | None = strawberry.field(description="WGS-84 longitude. / 经度。")
    commitments: list[str] = strawberry.field(description="Low-carbon commitments. / 低碳承诺。")
    status: MerchantStatus = strawberry.field(description="Lifecycle state. / 状态。")
    created_at: datetime = strawberry.field(description="When the merchant was created or applied. / 创建时间。")

    @classmethod
    def from_row(cls, row: dict) -> "Merchant":
        return cls(
            pk=row["id"],
            name_zh=row["name_zh"],
            name_en=row["name_en"],
            category=MerchantCategory(row["category"]),
            city=row["city"],
            district=row["district"],
            address=row["address"],
            latitude=row["latitude"],
            longitude=row["longitude"],
            commitments=json.loads(row["commitments"] or "[]"),
            status=MerchantStatus(row["status"]),
            created_at=row["created_at"],
        )

    @strawberry.field(description="Balance of the merchant's points account (staff and admins). / 商户积分余额。")
    async def points_balance(self, info: Info) -> int | None:
        await require_manage(info, self.pk, "merchant:read")
        return await loaders.merchant_balances(info).load(self.pk)


async def merchant_of_user(info: Info, user_id: int) -> Merchant | None:
    """``User.merchant``: the merchant the user works for (the user and admins)."""
    merchant_id = await loaders.staff_merchant(info).load(user_id)
    if merchant_id is None:
        return None
    row = await loaders.merchants(info).load(merchant_id)
    return Merchant.from_row(row) if row else None


# --- inputs and payloads -----------------------------------------------------------------------------


@strawberry.input(description="Merchant profile. / 商户资料。")
class MerchantProfileInput:
    name_zh: str = strawberry.field(description="Chinese name, 1-100 characters. / 中文名称。")
    name_en: str = strawberry.field(default="", description="English name, up to 100 characters. / 英文名称。")
    category: MerchantCategory = strawberry.field(description="Kind of business. / 类别。")
    city: str = strawberry.field(description="City. / 城市。")
    district: str = strawberry.field(default="", description="District. / 区。")
    address: str = strawberry.field(default="", description="Street address. / 地址。")
    latitude: float | None = strawberry.field(default=None, description="WGS-84 latitude, -90..90 (with longitude).")
    longitude: float | None = strawberry.field(default=None, description="WGS-84 longitude, -180..180 (with latitude).")
    commitments: list[str] = strawberry.field(default_factory=list, description="Up to 20 low-carbon commitments. / 低碳承诺。")


def profile_dict(p: Any) -> dict[str, Any]:
    """Input object → service field dict; UNSET fields are left out (partial updates)."""
    out = {}
    for name in ("name_zh", "name_en", "category", "city", "district", "address", "latitude", "longitude", "commitments"):
        value = getattr(p, name, strawberry.UNSET)
        if value is strawberry.UNSET:
            continue
        out[name] = value.value if isinstance(value, Enum) else value
    return out


@strawberry.input(description="Onboard a merchant (admin). / 创建商户（管理员）。")
class CreateMerchantInput:
    profile: MerchantProfileInput = strawberry.field(description="Profile. / 资料。")
    owner_user_id: strawberry.ID | None = strawberry.field(
        default=None, description="User who manages the merchant; becomes staff with the MERCHANT role. / 负责人。"
    )


@strawberry.input(description="Apply to become a merchant. / 申请成为商户。")
class ApplyForMerchantInput:
    profile: MerchantProfileInput = strawberry.field(description="Profile. / 资料。")
    volunteer_code: str | None = strawberry.field(
        default=None, description="Code of the volunteer who brought you (optional). / 推荐志愿者的推荐码（选填）。"
    )


@strawberry.input(description="Approve or reject a merchant application (admin). / 审核商户申请。")
class ReviewMerchantApplicationInput:
    merchant_id: strawberry.ID = strawberry.field(description="The pending merchant. / 待审核商户。")
    approve: bool = strawberry.field(description="True to approve, false to reject. / 是否通过。")
    reason: str = strawberry.field(description="Why, 3-500 characters (audit log). / 原因。")


@strawberry.input(description="Suspend or reactivate a merchant (admin). / 暂停或恢复商户（管理员）。")
class SetMerchantStatusInput:
    merchant_id: strawberry.ID = strawberry.field(description="The merchant. / 商户。")
    status: MerchantStatus = strawberry.field(description="SUSPENDED (from ACTIVE) or ACTIVE (from SUSPENDED).")
    reason: str = strawberry.field(description="Why, 3-500 characters (audit log). / 原因。")


@strawberry.input(description="Change a merchant's profile (staff or admin); omitted fields stay. / 修改商户资料。")
class UpdateMerchantInput:
    merchant_id: strawberry.ID = strawberry.field(description="The merchant. / 商户。")
    name_zh: str | None = strawberry.field(default=strawberry.UNSET, description="Chinese name. / 中文名称。")
    name_en: str | None = strawberry.field(default=strawberry.UNSET, description="English name. / 英文名称。")
    category: MerchantCategory | None = strawberry.field(default=strawberry.UNSET, description="Category. / 类别。")
    city: str | None = strawberry.field(default=strawberry.UNSET, description="City. / 城市。")
    district: str | None = strawberry.field(default=strawberry.UNSET, description="District. / 区。")
    address: str | None = strawberry.field(default=strawberry.UNSET, description="Address. / 地址。")
    latitude: float | None = strawberry.field(default=strawberry.UNSET, description="Latitude (give with longitude; null clears).")
    longitude: float | None = strawberry.field(default=strawberry.UNSET, description="Longitude (give with latitude; null clears).")
    commitments: list[str] | None = strawberry.field(default=strawberry.UNSET, description="Low-carbon commitments. / 低碳承诺。")


@strawberry.input(description="Add a staff member to a merchant (admin or the merchant's owner). / 添加商户员工。")
class AddMerchantStaffInput:
    merchant_id: strawberry.ID = strawberry.field(description="The merchant. / 商户。")
    user_id: strawberry.ID = strawberry.field(description="The user to add; they get the MERCHANT role. / 用户。")


MerchantErrorCode = error_code_enum(
    "MerchantErrorCode", ('APPLICATION_PENDING', 'ALREADY_REVIEWED', 'ALREADY_MERCHANT_STAFF', 'MERCHANT_NOT_ACTIVE', 'INVALID_COORDINATES', 'INVALID_STATUS', 'INVALID_STATUS_TRANSITION'),
    description="Codes of the merchant mutations (onboarding, applications, status, profile, staff)' userErrors. / 商户错误代码。",
)
MerchantError = user_error_type("MerchantError", MerchantErrorCode, description="Why one of the merchant mutations (onboarding, applications, status, profile, staff) failed. / 商户错误。")


@strawberry.type(description="Result of merchant mutations.")
class MerchantPayload:
    merchant: Merchant | None = strawberry.field(default=None, description="The merchant.")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed.")
    errors: list[MerchantError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")


@strawberry.type(description="Result of `addMerchantStaff`.")
class AddMerchantStaffPayload:
    merchant: Merchant | None = strawberry.field(default=None, description="The merchant.")
    user: User | None = strawberry.field(
        default=None, description="The new staff member."
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed.")
    errors: list[MerchantError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")


def decode_opt(gid: Any, type_name: str, field: str) -> int | None:
    """An optional global ID argument: None stays None, anything else must be a ``type_name`` ID."""
    return None if gid is None else decode_id(gid, type_name, field=field)
