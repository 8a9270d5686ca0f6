"""Error masking and error codes on the wire.

* Domain errors (``jingtan_api.errors.DomainError``) keep their message; ``extensions.code`` says what.
* Parse and validation errors keep their message (code ``GRAPHQL_PARSE_FAILED`` /
  ``GRAPHQL_VALIDATION_FAILED``). In production "Did you mean …?" suggestions are removed, and so is
  every submitted value graphql-core quotes in them ("… found: {'password': '…'}", "String cannot
  represent a non string value: […]"), variables and literals alike: a password sent with the wrong type
  must not come back in a response (or in a client's error log).
* Anything else is logged with its traceback and replaced by "Internal error" with the request id.
"""

import logging
import re

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from jingtan_api.errors import DomainError
from jingtan_api.logs import request_id_var

log = logging.getLogger("jingtan.graphql")

_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")
# Where graphql-core (and strawberry's scalars) start quoting the submitted value: ", found: <value>.",
# ". Found: <value>.", "… cannot represent …: <value>", ", but encountered error '<text>'; found: <value>".
_QUOTED_VALUE = re.compile(
    r"(?:,? but encountered error .*|[,.]? [Ff]ound:? .*|(?<=cannot represent)(?P<kind>[^:]*): .*)$", re.DOTALL
)


def redact_values(message: str) -> str:
    """A GraphQL error message without suggestions and without the values it quotes."""
    message = _SUGGESTION.sub("", message)
    message = _QUOTED_VALUE.sub(lambda m: f"{m.group('kind') or ''}.", message, count=1)
    return message


def is_expected(error: GraphQLError) -> bool:
    original = error.original_error
    # No path: the error came from parsing, validation or variable coercion, not from a resolver.
    return original is None or error.path is None or isinstance(original, DomainError | GraphQLError)


class JingtanMaskErrors(MaskErrors):
    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda e: not is_expected(e), error_message="Internal error / 服务器内部错误")

    def _process_result(self, result: object) -> None:
        # strawberry's test is ``isinstance(result, <runtime-checkable Protocol with errors>)`` — an
        # attribute test, spelled directly here (the Protocol check is slow and runs on every operation).
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self._process_errors(errors)  # type: ignore[attr-defined]

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        request_id = request_id_var.get()
        original = error.original_error
        log.error(
            "unexpected error in resolver",
            exc_info=(type(original), original, original.__traceback__) if original else None,
            extra={"path": list(error.path or [])},
        )
        return GraphQLError(
            message=self.error_message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
        )


def error_to_wire(error: dict, *, production: bool) -> dict:
    """Make sure every error on the wire has ``extensions.code``."""
    extensions = error.setdefault("extensions", {})
    if "code" not in extensions:
        message = error.get("message", "")
        if message.startswith("Syntax Error"):
            extensions["code"] = "GRAPHQL_PARSE_FAILED"
        else:
            extensions["code"] = "GRAPHQL_VALIDATION_FAILED"
    if production:
        message = error.get("message", "")
        # Errors without a path come from parsing, validation or variable coercion: the ones that quote input.
        error["message"] = _SUGGESTION.sub("", message) if "path" in error else redact_values(message)
    return error
