"""The mutation toolkit: expected failures become the payload's ``userErrors``, typed per domain.

A mutation is declared with :func:`payload_mutation` instead of ``strawberry.mutation``. When its
resolver raises a :class:`jingtan_api.errors.DomainError`, the field extension answers with the
mutation's payload type, every other field at its default and the errors filled from the exception —
no try/except per resolver (Saleor's ``BaseMutation.mutate`` does the same).

A payload carries the errors twice, with the same entries in the same order:

* ``userErrors: [UserError!]!`` — ``code: String!``, as the API always had it (kept for compatibility);
* ``errors: [<Domain>Error!]!`` — ``code: <Domain>ErrorCode!``, a GraphQL enum per domain made by
  :func:`error_code_enum`, so clients see in the SDL every code a domain can answer with (Saleor's
  ``accountErrors``/``AccountErrorCode`` pattern).

Codes and their descriptions come from ``jingtan_api.errors.ERROR_CODES``; string values never change.

No ``from __future__ import annotations``: the error types are built at import time from arguments.
"""

from collections.abc import Awaitable, Callable, Iterable
from enum import Enum
from typing import Any

import strawberry
from strawberry.extensions import FieldExtension
from strawberry.types import Info
from strawberry.types.base import StrawberryList, StrawberryObjectDefinition, StrawberryOptional
from strawberry.types.field import StrawberryField

from jingtan_api.errors import COMMON_CODES, ERROR_CODES, DomainError, Unauthenticated
from jingtan_api.graphql.relay import UserError
from jingtan_api.users.service import roles_and_status


def error_code_enum(name: str, codes: Iterable[str], *, description: str) -> type[Enum]:
    """A GraphQL enum of the common codes and ``codes`` (each described in ``ERROR_CODES``)."""
    values = list(dict.fromkeys((*COMMON_CODES, *codes)))
    unknown = [c for c in values if c not in ERROR_CODES]
    if unknown:
        raise ValueError(f"{name}: codes without a description in ERROR_CODES: {unknown}")
    members = {c: strawberry.enum_value(c, description=ERROR_CODES[c]) for c in values}
    return strawberry.enum(Enum(name, members), description=description)  # type: ignore[misc]


def user_error_type(name: str, codes: type[Enum], *, description: str) -> type:
    """The error type of a domain's payloads: ``{message, code: <codes>!, field}``."""
    namespace = {
        "__annotations__": {"message": str, "code": codes, "field": list[str] | None},
        "__module__": __name__,
        "message": strawberry.field(description="Human-readable message (zh / en). / 错误信息。"),
        "code": strawberry.field(description="Stable machine-readable code. / 错误代码。"),
        "field": strawberry.field(
            default=None, description='Path of the input field at fault, e.g. ["input", "amount"]. / 出错的输入字段。'
        ),
    }
    return strawberry.type(type(name, (), namespace), name=name, description=description)


def _error_type_of(payload: type) -> type:
    definition = getattr(payload, "__strawberry_definition__", None)
    if isinstance(definition, StrawberryObjectDefinition):
        names = {f.python_name: f for f in definition.fields}
        typed = names.get("errors")
        if "user_errors" in names and typed is not None and isinstance(typed.type, StrawberryList):
            return typed.type.of_type
    raise TypeError(f"{payload!r} needs user_errors and errors lists: a payload_mutation returns a payload type")


def payload_errors(payload: type, exc: DomainError) -> dict[str, list[Any]]:
    """``exc`` as the payload's ``user_errors`` and ``errors`` (a code outside the domain's enum is a
    bug: it raises, and the client gets a masked internal error while the log says which code)."""
    error_type = _error_type_of(payload)
    codes = error_type.__annotations__["code"]
    problems = exc.problems()
    return {
        "user_errors": [UserError(message=m, code=code, field=path) for m, code, path in problems],
        "errors": [error_type(message=m, code=codes(code), field=path) for m, code, path in problems],
    }


class DomainErrorsAsUserErrors(FieldExtension):
    """On a ``DomainError``, answer with the field's payload type carrying ``userErrors``."""

    def apply(self, field: StrawberryField) -> None:
        self.field = field
        self._payload: type | None = None

    def payload_for(self, exc: DomainError) -> Any:
        if self._payload is None:
            payload = self.field.type
            if isinstance(payload, StrawberryOptional):
                payload = payload.of_type
            self._payload = payload
        return self._payload(**payload_errors(self._payload, exc))

    def resolve(self, next_: Callable[..., Any], source: Any, info: Info, **kwargs: Any) -> Any:
        try:
            return next_(source, info, **kwargs)
        except DomainError as exc:
            return self.payload_for(exc)

    async def resolve_async(self, next_: Callable[..., Awaitable[Any]], source: Any, info: Info, **kwargs: Any) -> Any:
        try:
            await _refuse_inactive_member(info)
            return await next_(source, info, **kwargs)
        except DomainError as exc:
            return self.payload_for(exc)


async def _refuse_inactive_member(info: Info) -> None:
    """A member's access token is stateless (valid until it expires), but a suspended member must not act:
    every mutation sent with a member's access token reads their status first (one primary-key read;
    admins' and API tokens' status is already checked on every request)."""
    viewer = info.context.viewer
    if viewer.user_id is None or viewer.is_admin or viewer.api_token_id is not None:
        return
    current = await info.context.read(roles_and_status, viewer.user_id)
    if current is None or current[1] != "ACTIVE":
        raise Unauthenticated(
            "This token was revoked or the account is suspended / 令牌已吊销或账户已停用", reason="REVOKED_TOKEN"
        )


def payload_mutation(*, description: str, **kwargs: Any) -> Any:
    """``strawberry.mutation`` whose domain errors become the payload's ``userErrors``."""
    extensions = [DomainErrorsAsUserErrors(), *kwargs.pop("extensions", ())]
    return strawberry.mutation(description=description, extensions=extensions, **kwargs)
