"""Domain errors. Services raise them; the GraphQL layer turns them into ``userErrors`` (mutations) or
GraphQL errors carrying ``extensions.code`` (queries). They never carry internals."""


class DomainError(Exception):
    code = "BAD_USER_INPUT"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field

    @property
    def extensions(self) -> dict:
        ext = {"code": self.code}
        if self.field:
            ext["field"] = self.field
        return ext

    def problems(self) -> list[tuple[str, str, list[str] | None]]:
        """(message, code, path of the input field) of each problem; one unless a subclass has more."""
        return [(self.message, self.code, ["input", self.field] if self.field else None)]


class ValidationFailed(DomainError):
    code = "BAD_USER_INPUT"


class NotFound(DomainError):
    code = "NOT_FOUND"


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"

    def __init__(self, message: str = "Authentication required / 请先登录", *, reason: str | None = None, **kw) -> None:
        super().__init__(message, **kw)
        # Why a credential that was sent was refused (TOKEN_EXPIRED: refresh; INVALID_TOKEN or
        # REVOKED_TOKEN: log in again). Shown as ``extensions.reason``.
        self.reason = reason

    @property
    def extensions(self) -> dict:
        ext = super().extensions
        if self.reason:
            ext["reason"] = self.reason
        return ext


class PermissionDenied(DomainError):
    code = "FORBIDDEN"

    def __init__(self, message: str = "Not allowed / 无权访问", **kw) -> None:
        super().__init__(message, **kw)


class InsufficientPoints(DomainError):
    code = "INSUFFICIENT_POINTS"


class IdempotencyConflict(DomainError):
    code = "IDEMPOTENCY_KEY_REUSED"


class RateLimited(DomainError):
    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: int | None = None, **kw) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after  # seconds; ``extensions.retryAfter`` when raised in a query

    @property
    def extensions(self) -> dict:
        ext = super().extensions
        if self.retry_after is not None:
            ext["retryAfter"] = self.retry_after
        return ext


class Conflict(DomainError):
    code = "CONFLICT"


# Every error code the API can answer with, and what it means. Each domain's GraphQL enum of codes
# (``LedgerErrorCode``, ...) takes its values and descriptions from here; string values never change.
COMMON_CODES: tuple[str, ...] = (
    "BAD_USER_INPUT", "NOT_FOUND", "UNAUTHENTICATED", "FORBIDDEN", "CONFLICT", "RATE_LIMITED", "TRY_AGAIN",
)
ERROR_CODES: dict[str, str] = {
    # common
    "BAD_USER_INPUT": "An input value is invalid; see field and message. / 输入无效。",
    "NOT_FOUND": "The object does not exist or is not visible to you. / 对象不存在或不可见。",
    "UNAUTHENTICATED": "Log in first, or the token sent is expired, invalid or revoked. / 未登录或令牌无效。",
    "FORBIDDEN": "You are logged in but not allowed to do this. / 无权操作。",
    "CONFLICT": "The object is not in a state that allows this. / 状态冲突。",
    "RATE_LIMITED": "Too many attempts or too much cost; retry after extensions.retryAfter seconds. / 请求过于频繁，请稍后重试。",
    "TRY_AGAIN": "The database was busy (serialization failure or deadlock); retry the same request. / 请重试。",
    "INVALID_CURSOR": "The pagination cursor is malformed or belongs to another list or order. / 游标无效。",
    "PAGE_SIZE_EXCEEDED": "first/last is outside 0..max page size. / 每页数量超出范围。",
    "PAGE_SIZE_INVALID": "first/last is negative: sizes are 1..max page size (0 = totalCount only). / 每页数量不能为负数。",
    "IDEMPOTENCY_KEY_REUSED": "The idempotencyKey was used before with a different input. / 幂等键已用于不同请求。",
    # GraphQL over HTTP and persisted operations (refused before execution)
    "BAD_REQUEST": "The HTTP request is malformed (body, content type, parameters). / 请求格式无效。",
    "METHOD_NOT_ALLOWED": "Use POST (queries may also use GET; mutations never). / 请求方法不允许。",
    "NOT_ACCEPTABLE": "Accept allows neither application/json nor application/graphql-response+json. / 响应格式不可接受。",
    "PERSISTED_QUERY_NOT_FOUND": "The server does not know that hash; send the query with it. / 未找到持久化查询。",
    "PERSISTED_QUERY_HASH_MISMATCH": "The query's SHA-256 is not the sha256Hash sent. / 查询与哈希不一致。",
    "PERSISTED_QUERY_INVALID": "persistedQuery or documentId is malformed (version 1, 64 hex digits). / 持久化查询参数无效。",
    "OPERATION_NOT_ALLOWED": "The allow-list is on: only registered operations run, sent by hash. / 仅允许已登记的操作。",
    # request limits (GraphQL errors, see docs/api.md "Limits")
    "QUERY_TOO_COMPLEX": "The static query cost is above graphql.max_cost; ask for smaller pages. / 查询过于复杂。",
    "RESULT_TOO_LARGE": "The answer would contain more than limits.max_objects objects. / 结果过大。",
    "TIMEOUT": "The operation ran longer than limits.execution_timeout_seconds and was stopped. / 执行超时。",
    "REQUEST_TOO_LARGE": "The body or query string is above limits.max_body_bytes (HTTP 413). / 请求过大。",
    "DOCUMENT_TOO_LARGE": "The GraphQL document is longer than limits.max_document_chars. / 查询文本过长。",
    # users and sessions
    "ALREADY_REGISTERED": "The email or phone number is already registered. / 已注册。",
    "INVALID_EMAIL": "Not a valid email address. / 邮箱无效。",
    "INVALID_PHONE": "Not a valid phone number. / 手机号无效。",
    "WEAK_PASSWORD": "The password does not meet the policy. / 密码强度不足。",
    "INVALID_CREDENTIALS": "Wrong account or password. / 账号或密码错误。",
    "ACCOUNT_DISABLED": "The account is disabled. / 账户已停用。",
    "INVALID_REFRESH_TOKEN": "The refresh token is unknown, expired or already used. / 刷新令牌无效。",
    "REFRESH_TOKEN_REUSED": "A used refresh token was sent again; the whole session was ended. / 刷新令牌被重复使用。",
    # ledger
    "INSUFFICIENT_POINTS": "Not enough points. / 积分不足。",
    # actions
    "ACTION_TYPE_DISABLED": "The action type is not enabled. / 该行为类别未启用。",
    "FUTURE_TIMESTAMP": "The action cannot end in the future. / 行为时间晚于现在。",
    "END_BEFORE_START": "The action ends before it starts. / 结束时间早于开始时间。",
    "PLUGIN_FAILURE": "The action type's plugin failed or timed out; nothing was recorded. / 插件出错。",
    "NOT_PENDING_REVIEW": "The action is not waiting for review. / 不在待审核状态。",
    # merchants
    "APPLICATION_PENDING": "An application of yours is already waiting for review. / 已有待审核申请。",
    "ALREADY_REVIEWED": "The application was already decided. / 申请已审核。",
    "ALREADY_MERCHANT_STAFF": "The user already works for a merchant. / 已是商户员工。",
    "MERCHANT_NOT_ACTIVE": "The merchant is not active. / 商户未启用。",
    "INVALID_COORDINATES": "Latitude/longitude are out of range or only one was given. / 坐标无效。",
    "INVALID_STATUS": "That status cannot be set here. / 状态无效。",
    "INVALID_STATUS_TRANSITION": "The object cannot move from its status to that one. / 状态变更无效。",
    "RANGE_TOO_LONG": "The date range is too long. / 日期范围过长。",
    # offers
    "INVALID_URL": "Not an https URL. / 链接无效。",
    "INVALID_WINDOW": "The offer must end after it starts. / 时间窗口无效。",
    "STOCK_BELOW_REDEEMED": "The total stock cannot go below what was already redeemed. / 库存低于已兑换数。",
    "OFFER_NOT_ACTIVE": "The offer is not active. / 优惠未上架。",
    "OFFER_NOT_STARTED": "The offer has not started yet. / 优惠未开始。",
    "OFFER_ENDED": "The offer has ended. / 优惠已结束。",
    "OUT_OF_STOCK": "Not enough items left. / 库存不足。",
    # redemptions
    "REDEMPTION_LIMIT_REACHED": "You already hold as many of this offer as one member may. / 已达每人限兑。",
    "ALREADY_CONFIRMED": "The code was already used. / 兑换码已核销。",
    "REDEMPTION_CANCELLED": "The redemption was cancelled. / 兑换已取消。",
    "REDEMPTION_EXPIRED": "The redemption expired. / 兑换已过期。",
    # volunteers
    "ALREADY_VOLUNTEER": "You already applied or are a volunteer. / 已申请或已是志愿者。",
    "SELF_APPROVAL": "You cannot approve your own application, hours or payout. / 不能审核自己的事项。",
    "NOT_A_VOLUNTEER": "Only active volunteers may do this. / 仅限志愿者。",
    "NOT_CERTIFIED": "Only certified volunteers may do this. / 仅限认证志愿者。",
    "EVENT_IN_PAST": "An event must start in the future. / 活动须在未来开始。",
    "EVENT_STARTED": "The event has already started or ended. / 活动已开始或已结束。",
    "EVENT_FULL": "The event has no places left. / 活动名额已满。",
    "ALREADY_SIGNED_UP": "You already signed up to this event. / 已报名。",
    "OWN_EVENT": "You run this event. / 您是活动组织者。",
    "NOT_SIGNED_UP": "Sign up to the event first. / 请先报名。",
    "CHECKIN_CLOSED": "Check-in is not open for this event now. / 当前不在签到时间。",
    "INVALID_CHECKIN_CODE": "Not a check-in code of this event. / 签到码无效。",
    "CHECKIN_CODE_EXPIRED": "The check-in code expired; scan the current one. / 签到码已过期。",
    "ALREADY_CHECKED_IN": "You already checked in. / 已签到。",
    "EVENT_NOT_ENDED": "The event has not ended yet. / 活动尚未结束。",
    "INVALID_REFERRAL_CODE": "No active volunteer has that code. / 推荐码无效。",
    "SELF_REFERRAL": "You cannot use your own referral code. / 不能使用自己的推荐码。",
    "ALREADY_REFERRED": "The member was already referred. / 已被推荐。",
    "ALREADY_ACTIVE": "Members who already acted cannot be referred. / 已有行为的会员不能被推荐。",
    "REFERRAL_WINDOW_CLOSED": "The time to enter a referral code after registration has passed. / 已超过填写推荐码期限。",
    # identity and privacy (docs/identity.md)
    "CONTACT_NOT_VERIFIED": "Verify a phone number or email first (earning and redeeming need one). / 请先验证手机号或邮箱。",
    "INVALID_CODE": "The code is wrong, or there is no code for this purpose and destination. / 验证码错误。",
    "CODE_EXPIRED": "The code expired; request a new one. / 验证码已过期。",
    "CODE_ALREADY_USED": "The code was already used; request a new one. / 验证码已使用。",
    "TOO_MANY_ATTEMPTS": "The code was entered wrongly too often and is void; request a new one. / 尝试次数过多。",
    "SEND_FAILED": "The message could not be sent; try again later. / 发送失败。",
    "CONTACT_TAKEN": "Another account already verified this phone number or email. / 已被其他账户验证。",
    "ALREADY_VERIFIED": "This contact is already verified. / 已验证。",
    "NO_CONTACT": "The account has no phone number or email of that kind. / 账户未设置该联系方式。",
    "SAME_PHONE": "That is already the account's phone number. / 与当前手机号相同。",
    "CONSENT_VERSION_OUTDATED": "That is not the current version of the terms or privacy notice. / 协议版本不是最新。",
    "EXPORT_LINK_INVALID": "The download link is malformed or its signature is wrong. / 下载链接无效。",
    "EXPORT_LINK_EXPIRED": "The download link expired; request a new export. / 下载链接已过期。",
    "EXPORT_LINK_USED": "The download link was already used; request a new export. / 下载链接已使用。",
    "PENDING_REDEMPTIONS": "Cancel or use your pending redemptions before deleting the account. / 请先处理未使用的兑换。",
    "DELETION_PENDING": "A deletion of this account is already scheduled. / 已申请注销。",
    "NO_DELETION_PENDING": "No deletion of this account is scheduled. / 没有待处理的注销申请。",
    "NOT_DUE": "The cooling-off period of this deletion has not ended. / 冷静期未结束。",
    # households and organisations (docs/community.md)
    "INVALID_INVITE": "The invite code is malformed, unknown or revoked. / 邀请码无效。",
    "INVITE_EXPIRED": "The invite code has expired. / 邀请码已过期。",
    "INVITE_USED": "The invite code was already used (up). / 邀请码已使用。",
    "TOO_MANY_INVITES": "Too many open invites; revoke some first. / 有效邀请过多。",
    "ALREADY_IN_HOUSEHOLD": "The member already belongs to a household (one per member). / 已加入家庭。",
    "NOT_HOUSEHOLD_MEMBER": "The user is not a member of that household. / 不是该家庭成员。",
    "HOUSEHOLD_FULL": "The household has the most members allowed. / 家庭成员已满。",
    "HOUSEHOLD_DISSOLVED": "The household was dissolved. / 家庭已解散。",
    "OWNER_MUST_TRANSFER": "The owner must transfer ownership before leaving. / 户主须先转让。",
    "CANNOT_REMOVE_OWNER": "The household's owner cannot be removed. / 不能移除户主。",
    "POOL_ALREADY_OPEN": "The household points pool is already open. / 家庭积分池已开通。",
    "POOL_NOT_OPEN": "The household has no points pool. / 家庭未开通积分池。",
    "POOL_NOT_EMPTY": "The household pool still holds points. / 家庭积分池仍有积分。",
    "ORGANISATION_CLOSED": "The organisation is closed. / 组织已关闭。",
    "ORGANISATION_NOT_ACTIVE": "The organisation is not active (pending or rejected). / 组织未启用。",
    "ALREADY_ORGANISATION_MEMBER": "The user is already a member of the organisation. / 已是组织成员。",
    "NOT_ORGANISATION_MEMBER": "The user is not a member of the organisation. / 不是组织成员。",
    "JOIN_REQUEST_PENDING": "A request to join is already waiting for a decision. / 入会申请待处理。",
    "LAST_ADMIN": "The organisation would be left without an admin. / 组织至少需要一位管理员。",
    # retirements (docs/community.md)
    "INSUFFICIENT_POOL": "The platform's pool of un-retired CO2e holds fewer grams than asked. / 可注销减排量不足。",
    "ALREADY_RETIRED": "Those action grams are already retired (possibly just now, by another request). / 减排量已被注销。",
    "ACTION_NOT_RETIRABLE": "Only approved actions with recorded CO2e can be retired. / 该行为不可注销。",
    "NOT_A_COMPANY": "Only company organisations retire reductions. / 仅企业可注销减排量。",
    "RETIREMENT_NOT_PAYABLE": "Retirements cannot be paid in points here (price not set). / 不支持积分支付。",
    "INVALID_PERIOD": "The reporting period is invalid (ends before it starts, or too long). / 期间无效。",
    # merchants' growth: campaigns, stations, segments, near me, images (docs/merchants.md)
    "CAMPAIGN_ENDED": "The campaign has ended (or was closed). / 活动已结束。",
    "STATION_CODE_TAKEN": "That station code is registered already. / 站点编号已被登记。",
    "NOT_IN_SEGMENT": "The offer is reserved for a group of members you are not in. / 该优惠仅面向特定会员。",
    "INVALID_RADIUS": "The search radius is out of range (1 m up to merchants.near_max_radius_km). / 搜索半径无效。",
    "NEAR_TOO_BROAD": "Too many places in the search area; use a smaller radius. / 范围内地点过多。",
    "UNRESOLVABLE_HOST": "The webhook URL's host does not resolve. / 回调网址的域名无法解析。",
    "UNSAFE_ADDRESS": "The webhook URL points at a private, loopback or reserved address (refused in production). / 回调网址指向内网或保留地址（生产环境不允许）。",
    "NO_EVENT_TYPES": "Choose at least one event type for the webhook endpoint. / 请为回调端点至少选择一种事件。",
    "UNKNOWN_EVENT_TYPE": "The event type is unknown or not available to this endpoint. / 事件类型未知或不适用于该端点。",
    "NOT_AN_IMAGE": "The upload is not a PNG, JPEG or WebP image. / 文件不是图片。",
    "IMAGE_TOO_LARGE": "The image is above the size or pixel limit. / 图片过大。",
    # methodologies
    "METHODOLOGY_NOT_REVIEWABLE": "The methodology version's state does not allow this decision (e.g. already decided). / 该方法学版本状态不允许此操作。",
    # impact and challenges (docs/impact.md)
    "UNKNOWN_ACTION_TYPE": "No enabled action type has that code. / 未知的行为类别。",
    "CHALLENGE_ENDS_BEFORE_START": "The challenge ends before (or when) it starts. / 挑战结束早于开始。",
    "CHALLENGE_STARTS_IN_PAST": "A challenge cannot start in the past. / 挑战不能从过去开始。",
    "CHALLENGE_TOO_LONG": "The challenge lasts longer than allowed. / 挑战时间过长。",
    "REWARD_ABOVE_ACCOUNT": "The challenge's rewards exceed what the organisation's account holds. / 奖励超过组织积分余额。",
    "CHALLENGE_NOT_ACTIVE": "The challenge was already settled or cancelled. / 挑战已结算或已取消。",
    "CHALLENGE_ENDED": "The challenge has ended; it can only be settled. / 挑战已结束。",
    "CHALLENGE_NOT_ENDED": "The challenge has not ended yet. / 挑战尚未结束。",
    # notifications (docs/live.md)
    "TOO_MANY_IDS": "More ids than one request may name (markNotificationsRead: 100). / 一次提交的 ID 过多。",
}
