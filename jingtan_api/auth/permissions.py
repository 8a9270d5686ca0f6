"""Who is asking: the ``Viewer`` and the checks every personal field uses."""

from contextvars import ContextVar
from datetime import datetime
from dataclasses import dataclass, field

from jingtan_api.errors import PermissionDenied, Unauthenticated

MEMBER = "MEMBER"
MERCHANT = "MERCHANT"
ADMIN = "ADMIN"
EXPERT = "EXPERT"  # member of the expert committee: reviews methodology versions
ROLES = (MEMBER, MERCHANT, ADMIN, EXPERT)

# Scopes an API token may carry, with what they allow. Interactive (JWT) sessions hold every scope
# their roles allow.
SCOPES: dict[str, str] = {
    "account:read": "Read the token owner's points account and ledger",
    "points:write": "Grant and revoke points (admin tokens only)",
    "audit:read": "Read the audit log (admin tokens only)",
    "users:read": "Read member profiles (admin tokens only)",
    "offers:redeem": "Redeem offers and cancel the owner's redemptions (members)",
    "offers:write": "Create and edit the owner's merchant's offers and profile (merchant staff)",
    "redemptions:confirm": "Confirm redemption codes at the owner's merchant (merchant staff)",
    "merchant:read": "Read the owner's merchant's redemptions, stats and settlement (merchant staff)",
    "actions:write": "Submit low-carbon actions for the token owner",
    "actions:review": "List all actions and review pending ones (admin tokens only)",
    "users:write": "Change users' roles (admin tokens only)",
    "merchants:write": "Onboard, approve and suspend merchants (admin tokens only)",
    "ledger:read": "Read any ledger transaction with all its entries (admin tokens only)",
    "community:write": "Act in the owner's household and organisations: join, leave, invite, donate, retire",
    "methodologies:review": "Approve, reject and retire methodology versions (expert committee tokens only)",
    "webhooks:write": "Manage webhook endpoints: admins the platform's, merchant staff their merchant's",
}
ROLE_SCOPES: dict[str, frozenset[str]] = {
    MEMBER: frozenset({"account:read", "offers:redeem", "actions:write", "community:write"}),
    MERCHANT: frozenset({"account:read", "offers:write", "redemptions:confirm", "merchant:read", "webhooks:write"}),
    ADMIN: frozenset(SCOPES),
    EXPERT: frozenset({"account:read", "methodologies:review"}),
}


def scopes_for_roles(roles: frozenset[str]) -> frozenset[str]:
    out: set[str] = set()
    for role in roles:
        out |= ROLE_SCOPES.get(role, frozenset())
    return frozenset(out)


acting_admin_var: ContextVar[int | None] = ContextVar("jingtan_acting_admin_id", default=None)
"""The admin acting for the member in the current request (``Viewer.acting_admin_id``): set by the HTTP
layer per request (reset to None for every request), read by ``audit.record`` and
``accounts.service.post_transaction``, which record it on every audit entry and ledger transaction the
request causes — whatever domain writes them."""


@dataclass(frozen=True)
class Viewer:
    user_id: int | None = None
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    api_token_id: int | None = None
    # The admin who created the API token in use for this (other) user: what the token does is theirs too.
    acting_admin_id: int | None = None
    # Why authentication failed, when a credential was sent but refused (e.g. TOKEN_EXPIRED).
    auth_error: str | None = field(default=None, compare=False)
    # When the credential stops being valid (the JWT's exp, an API token's expiry); None: no expiry. Live
    # connections end then unless refreshed (jingtan_api.live.transport).
    expires_at: datetime | None = field(default=None, compare=False)

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    def require_user(self) -> int:
        if self.user_id is None:
            if self.auth_error:
                raise Unauthenticated(_AUTH_ERRORS.get(self.auth_error, self.auth_error), reason=self.auth_error)
            raise Unauthenticated()
        return self.user_id

    def require_role(self, role: str, *, scope: str | None = None) -> int:
        user_id = self.require_user()
        if role not in self.roles:
            raise PermissionDenied()
        if scope:
            self.require_scope(scope)
        return user_id

    def require_scope(self, scope: str) -> None:
        self.require_user()
        if scope not in self.scopes:
            raise PermissionDenied(f"This token lacks the scope {scope!r} / 令牌缺少权限 {scope}")

    def has_any_scope(self, *scopes: str) -> bool:
        return self.user_id is not None and any(scope in self.scopes for scope in scopes)

    def require_any_scope(self, *scopes: str) -> None:
        self.require_user()
        if not self.has_any_scope(*scopes):
            raise PermissionDenied(f"This token needs one of the scopes {', '.join(scopes)} / 令牌缺少所需权限")

    def can_see_user(self, user_id: int) -> bool:
        return self.user_id == user_id or (self.is_admin and "users:read" in self.scopes)


_AUTH_ERRORS = {
    "TOKEN_EXPIRED": "Access token expired: refresh it / 访问令牌已过期，请刷新",
    "INVALID_TOKEN": "Invalid access token / 访问令牌无效",
    "REVOKED_TOKEN": "This token was revoked or the account is disabled / 令牌已吊销或账户已停用",
}
