"""The ASGI application: ``create_app(settings=None, *, plugins=None) -> Starlette``."""

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry import UNSET
from strawberry.types import ExecutionResult

from jingtan_api.auth.permissions import Viewer, scopes_for_roles
from jingtan_api.auth.tokens import API_TOKEN_PREFIX, authenticate_api_token, touch_api_token
from jingtan_api.context import Context
from jingtan_api.db import utcnow
from jingtan_api.graphql.assemble import build_schema
from jingtan_api.graphql.errors import error_to_wire
from jingtan_api.jobs import run_periodically
from jingtan_api.logs import configure_logging, request_id_var
from jingtan_api.plugins.manager import load_plugins
from jingtan_api.services import Clock, Services
from jingtan_api.settings import Settings, load_settings
from jingtan_api.users.service import roles_and_status

log = logging.getLogger("jingtan.app")


class RequestIdMiddleware:
    """Pure ASGI middleware: a request id per request (from ``X-Request-ID`` when sane), echoed in the
    response and put in every log line; one access-log line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if 8 <= len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status,
                    "duration_ms": round((time.perf_counter() - start) * 1000, 2),
                },
            )
            request_id_var.reset(token)


BAD_REQUEST_BODY = (
    "The request must be a JSON object {\"query\": ..., \"variables\": {...}} (a list of such objects only when "
    "batching is on) / 请求须为 JSON 对象（仅在开启批量请求时可为对象列表）"
)
_BATCH_ITEM_FIELDS = (("query", str, "a string"), ("operationName", str, "a string"),
                      ("variables", dict, "an object"), ("extensions", dict, "an object"))
# HTTP status of a refused request -> extensions.code of its GraphQL-shaped error body.
HTTP_ERROR_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND"}


class JingtanGraphQL(GraphQL):
    def __init__(self, services: Services, **kwargs: Any) -> None:
        self.services = services
        super().__init__(**kwargs)

    def parse_json(self, data: str | bytes) -> Any:
        """The POST body (the one document strawberry hands over as bytes; GET parameters come as str)
        must be an object, or a list of objects (a batch): strawberry calls ``.get`` on what it finds, so a
        scalar body (``"hello"``, ``123``, ``null``) would otherwise end in an AttributeError and a 500."""
        value = super().parse_json(data)
        if not isinstance(data, bytes) or isinstance(value, dict):
            return value  # a single operation's fields are checked by strawberry
        if not (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
            raise HTTPException(400, BAD_REQUEST_BODY)
        for item in value:  # strawberry does not check the items of a batch
            for key, kind, what in _BATCH_ITEM_FIELDS:
                if item.get(key) is not None and not isinstance(item[key], kind):
                    raise HTTPException(400, f"`{key}` of a batched operation must be {what} or null / 批量请求中 `{key}` 的类型错误")
        return value

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        # strawberry answers a refused request (bad JSON, batching off, mutation over GET, ...) with a
        # plain-text body; clients get the same GraphQL-shaped JSON as for every other error instead.
        try:
            return await super().run(request, context, root_value)
        except HTTPException as exc:
            reason = exc.reason if "/" in exc.reason else f"{exc.reason} / 请求无效"
            error = {"message": reason, "extensions": {"code": HTTP_ERROR_CODES.get(exc.status_code, "BAD_REQUEST")}}
            return JSONResponse({"data": None, "errors": [error]}, status_code=exc.status_code)

    async def get_context(self, request: Request, response: Any) -> Context:
        viewer = await self._authenticate(request)
        return Context(self.services, request, viewer, request_id_var.get() or uuid.uuid4().hex)

    async def _authenticate(self, request: Request) -> Viewer:
        header = request.headers.get("authorization")
        if not header:
            return Viewer()
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            return Viewer(auth_error="INVALID_TOKEN")
        if credential.startswith(API_TOKEN_PREFIX):
            now = self.services.clock()
            async with self.services.db.read() as conn:
                viewer, touch_due = await authenticate_api_token(conn, credential, now=now)
            if touch_due:
                await self.services.db.write(lambda conn: touch_api_token(conn, viewer.api_token_id, now=now))
            return viewer
        viewer = self.services.access_tokens.decode(credential)
        if viewer.is_admin:
            # Access tokens are stateless, but admin powers are checked against the database on every
            # request (one primary-key read, admins only): demoting or disabling an admin takes effect at
            # once instead of when their token expires.
            async with self.services.db.read() as conn:
                current = await roles_and_status(conn, viewer.user_id)
            if current is None or current[1] != "ACTIVE":
                return Viewer(auth_error="REVOKED_TOKEN")
            roles = current[0]
            return Viewer(user_id=viewer.user_id, roles=roles, scopes=scopes_for_roles(roles))
        return viewer

    async def execute_operation(self, request, request_adapter, request_data, context, root_value, sub_response):
        # Batched operations run concurrently on one context: they never share a read transaction.
        context.single_operation = not isinstance(request_data, list)
        try:
            return await super().execute_operation(
                request, request_adapter, request_data, context, root_value, sub_response
            )
        finally:
            await context.end_shared_reads()  # normally already done by SharedReads; here for cancellation

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        data = await super().process_result(request, result)
        if data.get("errors"):
            production = self.services.settings.is_production
            data["errors"] = [error_to_wire(e, production=production) for e in data["errors"]]
        return data


def create_app(
    settings: Settings | None = None,
    *,
    plugins: Any = None,
    clock: Clock | None = None,
) -> Starlette:
    """Build the app. ``plugins``: an explicit list of plugin objects (or ``(name, plugin)`` pairs) to
    use instead of the enabled entry points (tests); ConfigurationError when a plugin cannot be used."""
    settings = settings or load_settings()
    configure_logging(settings.log.level, settings.log.json_format)
    host = load_plugins(settings, plugins)
    schema = build_schema(settings, host)
    services = Services.build(settings, clock=clock or utcnow, plugins=host)
    graphql_app = JingtanGraphQL(
        services,
        schema=schema,
        graphql_ide="graphiql" if settings.graphiql_enabled else None,
        allow_queries_via_get=True,
    )

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        try:
            await asyncio.wait_for(services.db.ping(), timeout=5)
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            log.warning("readiness check failed", extra={"error": type(exc).__name__})
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        task = None
        if settings.points.expiry_interval_seconds:
            task = asyncio.create_task(
                run_periodically(
                    services.db,
                    services.clock,
                    interval_seconds=settings.points.expiry_interval_seconds,
                    settings=settings,
                )
            )
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await services.db.dispose()

    app = Starlette(
        routes=[
            Route("/graphql", graphql_app, methods=["GET", "POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.schema = schema
    app.add_middleware(RequestIdMiddleware)
    return app
