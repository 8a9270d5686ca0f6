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


class Conflict(DomainError):
    code = "CONFLICT"
