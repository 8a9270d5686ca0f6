"""The ASGI application: ``create_app(settings=None, *, plugins=None) -> Starlette``."""

import asyncio
import contextlib
import functools
import gc
import hmac
import json
import ipaddress
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import orjson
from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from graphql import GraphQLError
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from jingtan_api.auth.permissions import Viewer, acting_admin_var, scopes_for_roles
from jingtan_api.auth.tokens import API_TOKEN_PREFIX, authenticate_api_token, touch_api_token
from jingtan_api.context import Context
from jingtan_api.db import utcnow
from jingtan_api.graphql.assemble import build_schema
from jingtan_api.graphiql import ASSETS_DIR, ASSETS_PATH, page_html
from jingtan_api.graphql.errors import error_to_wire
from jingtan_api.identity.http import download_export
from jingtan_api.jobs import run_periodically
from jingtan_api.live.transport import LiveTransport
from jingtan_api.limits import (
    BodyLimitMiddleware,
    Buckets,
    RequestLimits,
    VariablesTooLarge,
    check_variables,
    make_buckets,
    request_address,
)
from jingtan_api.logs import configure_logging, request_id_var
from jingtan_api.observability import metrics, tracing
from jingtan_api.observability.ledger import LedgerGauges
from jingtan_api.media.http import media_routes
from jingtan_api.persisted import PersistedOperations, PersistedQueryError, load_manifest
from jingtan_api.plugins.manager import load_plugins
from jingtan_api.services import Clock, Services
from jingtan_api.settings import ConfigurationError, Settings, load_settings
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
        acting = acting_admin_var.set(None)  # set from the viewer once authenticated (get_context)
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        span_cm = tracing.request_span(scope, request_id) if tracing.enabled() else contextlib.nullcontext()
        try:
            with span_cm as span:
                await self.app(scope, receive, send_with_id)
                if span is not None:
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        tracing.set_error(span, str(status))
        finally:
            metrics.child(metrics.HTTP_REQUESTS, metrics.route_label(scope.get("path", "")), str(status)).inc()
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
            acting_admin_var.reset(acting)


GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"

# HTTP-level refusals (before any GraphQL work): code and the Chinese half of the message.
_HTTP_ERRORS = {
    400: ("BAD_REQUEST", "请求格式无效"),
    404: ("NOT_FOUND", "未找到"),
    405: ("METHOD_NOT_ALLOWED", "不允许的请求方法"),
    406: ("NOT_ACCEPTABLE", "无法提供所接受的响应格式"),
}


# Content-Type values the fast lane takes (JingtanGraphQL._fast_lane); strawberry reads each as JSON.
_FAST_CONTENT_TYPES = frozenset(
    {b"application/json", b"application/json; charset=utf-8", b"application/json; charset=UTF-8", b"application/json;charset=utf-8"}
)


@functools.lru_cache(maxsize=512)
def negotiate(accept: str | None) -> str | None:
    """The media type to answer with (GraphQL over HTTP): ``application/graphql-response+json`` when the
    client names it and prefers it at least as much as ``application/json``; ``application/json`` when it
    sends no Accept header, a wildcard or ``application/json``; None when it accepts neither (406)."""
    if accept is None or not accept.strip():
        return JSON
    quality = {GRAPHQL_RESPONSE_JSON: -1.0, JSON: -1.0}
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media in quality:
            quality[media] = max(quality[media], q)
        elif media in ("*/*", "application/*"):
            quality[JSON] = max(quality[JSON], q)
    if quality[GRAPHQL_RESPONSE_JSON] > 0 and quality[GRAPHQL_RESPONSE_JSON] >= quality[JSON]:
        return GRAPHQL_RESPONSE_JSON
    return JSON if quality[JSON] > 0 else None


def _is_request_error(response: GraphQLHTTPResponse) -> bool:
    """No execution happened: no data and every error without a path (parse, validation, variable
    coercion, the cost limit, a refused persisted query)."""
    errors = response.get("errors") or []
    return response.get("data") is None and bool(errors) and all(not e.get("path") for e in errors)


BAD_REQUEST_BODY = (
    "The request must be a JSON object {\"query\": ..., \"variables\": {...}} (a list of such objects only when "
    "batching is on) / 请求须为 JSON 对象（仅在开启批量请求时可为对象列表）"
)
_BATCH_ITEM_FIELDS = (("query", str, "a string"), ("operationName", str, "a string"),
                      ("variables", dict, "an object"), ("extensions", dict, "an object"))


SUBSCRIPTION_OVER_HTTP = (
    "Subscriptions run over WebSocket (graphql-transport-ws) on /graphql, not over HTTP / 订阅请通过 WebSocket 连接"
)


class JingtanGraphQL(GraphQL):
    graphql_transport_ws_handler_class = LiveTransport

    def __init__(
        self, services: Services, buckets: Buckets, *, persisted: PersistedOperations, fast_lane: bool = True,
        **kwargs: Any,
    ) -> None:
        self.services = services
        self.buckets = buckets
        self.persisted = persisted
        super().__init__(**kwargs)
        # The fast lane parses the body itself: only where strawberry's parsing could not do anything else
        # (no HTTP streaming transport, no incremental delivery).
        self.fast_lane = (
            fast_lane
            and not self._stream_transport_map
            and not self.schema.config.enable_experimental_incremental_execution
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        try:
            response = await self._fast_lane(request) if self.fast_lane and scope["method"] == "POST" else None
            if response is None:
                response = await self.run(request)  # the body read by the fast lane stays on ``request``
        except HTTPException as exc:
            response = self._refusal(request, exc.status_code, exc.reason)
        except PersistedQueryError as exc:
            response = self._graphql_errors(request, [exc.formatted()])
        await response(scope, receive, send)

    async def _fast_lane(self, request: Request) -> Response | None:
        """One operation POSTed as ``application/json``, answered with the very functions of the full path
        (``run``) — context, persisted operations, limits, execution, ``process_result``,
        ``create_response`` — minus strawberry's generic body parsing (content-type parsing, streaming
        transports, the IDE check, the second look for ``documentId``). None, before anything with an effect has run (the
        context authenticates), when the request is anything else: a batch, another content type, an
        Accept that needs a 406, a body that is not one JSON object with fields of the expected types, a
        ``documentId``. ``tests/test_http_fast_path.py`` compares both paths response by response."""
        content_type = next((v for k, v in request.scope["headers"] if k == b"content-type"), None)
        if content_type not in _FAST_CONTENT_TYPES:
            return None
        if negotiate(request.headers.get("accept")) is None:
            return None
        body = await request.body()
        if b"documentId" in body:
            return None
        try:
            raw = self.decode_json(body)  # the full path's decoder (orjson reads big integers as floats)
        except ValueError:
            return None
        if type(raw) is not dict:
            return None
        query, variables, extensions, operation_name = (
            raw.get("query"), raw.get("variables"), raw.get("extensions"), raw.get("operationName")
        )
        if not (
            (query is None or type(query) is str)
            and (variables is None or type(variables) is dict)
            and (extensions is None or type(extensions) is dict)
            and (operation_name is None or type(operation_name) is str)
        ):
            return None
        # From here on exactly what ``run`` does for such a request.
        root_value = await self.get_root_value(request)
        request_adapter = self.request_adapter_class(request)
        sub_response = await self.get_sub_response(request)
        context = await self.get_context(request, response=sub_response)
        data = GraphQLRequestData(
            query=self.persisted.resolve(query, extensions, None),
            variables=variables,
            operation_name=operation_name,
            extensions=extensions,
            protocol="http",
        )
        result = await self.execute_operation(
            request=request, request_adapter=request_adapter, request_data=data, context=context,
            root_value=root_value, sub_response=sub_response,
        )
        response_data = await self.process_result(request=request, result=result)
        if result.errors:
            self._handle_errors(result.errors, response_data)
        return self.create_response(response_data=response_data, sub_response=sub_response)

    def encode_json(self, data: object) -> bytes:
        """Response bodies through orjson (UTF-8, compact); anything orjson cannot encode (an integer
        beyond 64 bits, a custom object) goes through the standard encoder instead of failing the request."""
        try:
            return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            return json.dumps(data, separators=(",", ":")).encode()  # ASCII: safe for lone surrogates too

    def _media_type(self, request: Request) -> str:
        return negotiate(request.headers.get("accept")) or JSON

    def _encode(self, media_type: str, body: Any, status_code: int, headers: dict | None = None) -> Response:
        content_type = f"{media_type}; charset=utf-8" if media_type == GRAPHQL_RESPONSE_JSON else media_type
        return Response(self.encode_json(body), status_code=status_code, media_type=content_type, headers=headers)

    def _refusal(self, request: Request, status_code: int, reason: str) -> Response:
        code, chinese = _HTTP_ERRORS.get(status_code, ("BAD_REQUEST", "请求无效"))
        message = reason if " / " in reason else f"{reason} / {chinese}"
        media_type = self._media_type(request)
        body: dict[str, Any] = {"errors": [{"message": message, "extensions": {"code": code}}]}
        if media_type == JSON:
            body = {"data": None, **body}  # application/json answers keep the usual shape
        headers = {"Allow": "GET, POST"} if status_code == 405 else None
        return self._encode(media_type, body, status_code, headers)

    def _graphql_errors(self, request: Request, errors: list[dict]) -> Response:
        """A request refused before execution: 200 with ``application/json`` (as before), 400 with
        ``application/graphql-response+json`` (no ``data`` entry, as the spec says for request errors)."""
        media_type = self._media_type(request)
        if media_type == GRAPHQL_RESPONSE_JSON:
            return self._encode(media_type, {"errors": errors}, 400)
        return self._encode(media_type, {"data": None, "errors": errors}, 200)

    def should_render_graphql_ide(self, request) -> bool:
        # A GET that names a persisted document (extensions or documentId, no query) is an operation.
        params = request.query_params
        return super().should_render_graphql_ide(request) and not (
            params.get("extensions") or params.get("documentId")
        )

    async def render_graphql_ide(self, request: Request) -> Response:
        return HTMLResponse(page_html())

    async def get_sub_response(self, request: Request) -> Response:
        sub_response = await super().get_sub_response(request)
        request.state.sub_response = sub_response
        return sub_response

    async def parse_http_body(self, request_adapter) -> GraphQLRequestData | list[GraphQLRequestData]:
        # Reached after the IDE page was (not) served: from here on the client wants a GraphQL response.
        if negotiate(request_adapter.headers.get("accept")) is None:
            raise HTTPException(406, f"Accept must allow {JSON} or {GRAPHQL_RESPONSE_JSON}")
        data = await super().parse_http_body(request_adapter)
        items = data if isinstance(data, list) else [data]
        document_ids = await self._document_ids(request_adapter, len(items))
        for item, document_id in zip(items, document_ids, strict=True):
            item.query = self.persisted.resolve(item.query, item.extensions, document_id)
        return data

    async def _document_ids(self, request_adapter, count: int) -> list[Any]:
        """``documentId`` of each operation (strawberry's parser drops keys it does not know)."""
        if request_adapter.method == "GET":
            return [request_adapter.query_params.get("documentId")]
        body = await request_adapter.get_body()
        if b"documentId" not in body:
            return [None] * count
        raw = self.parse_json(body)
        items = raw if isinstance(raw, list) else [raw]
        return [item.get("documentId") if isinstance(item, dict) else None for item in items]

    async def execute_single(self, request, request_adapter, sub_response, context, root_value, request_data):
        try:
            return await super().execute_single(
                request, request_adapter, sub_response, context, root_value, request_data
            )
        except HTTPException as exc:
            cause = exc.__cause__
            if isinstance(cause, InvalidOperationTypeError) and cause.operation_type is OperationType.SUBSCRIPTION:
                raise HTTPException(400, SUBSCRIPTION_OVER_HTTP) from exc
            if isinstance(cause, InvalidOperationTypeError) and request_adapter.method == "GET":
                raise HTTPException(405, exc.reason) from exc  # the spec: a mutation over GET is 405
            raise

    def create_response(self, response_data, sub_response: Response) -> Response:
        response = super().create_response(response_data, sub_response)
        media_type = getattr(sub_response, "graphql_media_type", JSON)
        if media_type != JSON:
            response.headers["content-type"] = f"{media_type}; charset=utf-8"
        return response

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


    async def get_context(self, request: Request, response: Any) -> Context:
        if isinstance(request, WebSocket):
            # A WebSocket connection authenticates in connection_init (jingtan_api.live.transport); its
            # one context lives as long as the connection. Rate limits are per HTTP request.
            return Context(self.services, request, Viewer(), request_id_var.get() or uuid.uuid4().hex)
        viewer = await self._authenticate(request)
        acting_admin_var.set(viewer.acting_admin_id)
        context = Context(self.services, request, viewer, request_id_var.get() or uuid.uuid4().hex)
        settings = self.services.settings
        address = "addr:" + request_address(request, trust_forwarded_for=settings.auth.trust_forwarded_for)
        if viewer.api_token_id is not None:
            client = f"token:{viewer.api_token_id}"
        elif viewer.user_id is not None:
            client = f"user:{viewer.user_id}"
        else:
            client = address
        context.limits = RequestLimits(settings.limits, self.buckets, client, address, headers=response.headers)
        return context

    def _too_large(self, data: GraphQLRequestData) -> ExecutionResult | None:
        """Document length and variables, checked before parsing and coercion."""
        limits = self.services.settings.limits
        if data.query is not None and len(data.query) > limits.max_document_chars:
            return _refused(
                f"The document is longer than {limits.max_document_chars} characters / "
                f"查询文本超过 {limits.max_document_chars} 个字符",
                code="DOCUMENT_TOO_LARGE",
                limit=limits.max_document_chars,
            )
        try:
            check_variables(
                data.variables, max_list_length=limits.max_variable_list_length, max_depth=limits.max_variable_depth
            )
        except VariablesTooLarge as exc:
            return _refused(exc.message, code="BAD_USER_INPUT", limit=limits.max_variable_list_length)
        return None

    async def _authenticate(self, request: Request) -> Viewer:
        return await self.authenticate(request.headers.get("authorization"))

    async def authenticate(self, header: str | None) -> Viewer:
        """The viewer of an ``Authorization`` value (HTTP header, or a WebSocket connection_init payload)."""
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
            return Viewer(user_id=viewer.user_id, roles=roles, scopes=scopes_for_roles(roles), expires_at=viewer.expires_at)
        return viewer

    async def execute_operation(self, request, request_adapter, request_data, context, root_value, sub_response):
        # Batched operations run concurrently on one context: they never share a read transaction.
        context.single_operation = not isinstance(request_data, list)
        request.state.batch = not context.single_operation  # read by process_result
        operations = request_data if isinstance(request_data, list) else [request_data]
        refusals = [self._too_large(data) for data in operations if isinstance(data, GraphQLRequestData)]
        refusal = next((r for r in refusals if r is not None), None)
        if refusal is not None:
            return [refusal] * len(request_data) if isinstance(request_data, list) else refusal
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
        sub_response = getattr(request.state, "sub_response", None)
        media_type = self._media_type(request)
        if sub_response is not None:
            sub_response.graphql_media_type = media_type
            # Batches (a list of results) keep 200: the spec covers single operations only.
            if media_type == GRAPHQL_RESPONSE_JSON and _is_request_error(data) and not getattr(request.state, "batch", False):
                data.pop("data", None)
                sub_response.status_code = 400
        return data


def _refused(message: str, *, code: str, limit: int) -> ExecutionResult:
    return ExecutionResult(data=None, errors=[GraphQLError(message, extensions={"code": code, "limit": limit})])


def metrics_allowed(request: Request, cfg: Any, *, production: bool) -> bool:
    """``/metrics``: the bearer token when one is configured; else, in production, only direct
    connections from ``allow_from`` networks (never X-Forwarded-For); in development anyone."""
    if cfg.token:
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(credential.strip().encode(), cfg.token.encode()):
            return True
    elif not production and not cfg.allow_from:
        return True
    client = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in cfg.allow_from)


class ServingState:
    """Readiness across a shutdown. On SIGTERM (or SIGINT) ``/readyz`` answers 503 at once while the
    server keeps accepting and serving for ``drain`` seconds — long enough for the load balancer's health
    check to take the worker out — and only then is the signal handed to uvicorn, which stops accepting,
    lets in-flight requests finish (``--timeout-graceful-shutdown``) and runs the lifespan's shutdown
    (jobs cancelled, pool closed)."""

    def __init__(self) -> None:
        self.draining = False

    def install_drain(self, drain: float):
        """Wrap the server's SIGTERM/SIGINT handlers; returns a function that puts them back."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return lambda: None
        previous: dict[int, Any] = {}

        def handler(signum: int, frame: Any) -> None:
            if self.draining:  # a second signal: hand over at once
                loop.call_soon_threadsafe(_call, previous[signum], signum, frame)
                return
            self.draining = True
            log.warning("shutdown requested: unready, draining", extra={"signal": signum, "drain_s": drain})
            loop.call_soon_threadsafe(loop.call_later, drain, _call, previous[signum], signum, frame)

        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                current = signal.getsignal(sig)
                if current in (None, signal.SIG_DFL, signal.SIG_IGN, signal.default_int_handler):
                    continue  # not under a server that handles it (tests' lifespan, the CLI)
                signal.signal(sig, handler)
                previous[sig] = current
            except ValueError:  # not the main thread
                return lambda: None

        def restore() -> None:
            for sig, old in previous.items():
                with contextlib.suppress(ValueError):
                    if signal.getsignal(sig) is handler:
                        signal.signal(sig, old)

        return restore


def tune_gc(thresholds: tuple[int, int, int]) -> Any:
    """Collect once, freeze what survives (the schema, plans, caches: built once, alive until the process
    ends) so later collections skip it, and collect the young generation every ``thresholds[0]``
    allocations instead of 700. Measured on the catalogue page under 16 connections: the collector's
    passes cost more CPU per request than the request itself. Returns a function that undoes it (tests
    run many apps in one process)."""
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)

    def restore() -> None:
        gc.set_threshold(*previous)
        gc.unfreeze()

    return restore


def _call(fn: Any, signum: int, frame: Any) -> None:
    if callable(fn):
        fn(signum, frame)


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
    try:
        tracing.configure_from_env()  # before the schema: resolver spans are added only when tracing is on
    except tracing.TracingConfigurationError as exc:
        raise ConfigurationError(str(exc)) from exc
    host = load_plugins(settings, plugins)
    schema = build_schema(settings, host)
    services = Services.build(settings, clock=clock or utcnow, plugins=host)
    gql_settings = settings.graphql
    if gql_settings.allow_list and not gql_settings.persisted_operations_file:
        raise ConfigurationError("graphql.allow_list needs graphql.persisted_operations_file (jingtan operations register)")
    persisted = PersistedOperations(
        load_manifest(gql_settings.persisted_operations_file) if gql_settings.persisted_operations_file else {},
        allow_list=gql_settings.allow_list,
        automatic=gql_settings.automatic_persisted_queries,
        cache_size=gql_settings.apq_cache_size,
    )
    buckets = make_buckets(settings.limits)
    graphql_app = JingtanGraphQL(
        services,
        buckets,
        persisted=persisted,
        schema=schema,
        graphql_ide="graphiql" if settings.graphiql_enabled else None,
        allow_queries_via_get=settings.get_queries_enabled,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        connection_init_wait_timeout=timedelta(seconds=settings.live.connection_init_timeout_seconds),
        max_subscriptions_per_connection=None,  # LiveTransport answers the limit with a coded error
        fast_lane=gql_settings.http_fast_lane,
    )

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    state = ServingState()
    ledger_gauges = LedgerGauges(services.db, max_age=settings.operations.metrics.ledger_refresh_seconds)

    async def readyz(_: Request) -> JSONResponse:
        if state.draining:
            return JSONResponse({"status": "shutting down", "database": "not checked"}, status_code=503)
        try:
            await asyncio.wait_for(services.db.ping(), timeout=5)
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            log.warning("readiness check failed", extra={"error": type(exc).__name__})
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    metrics_settings = settings.operations.metrics

    async def metrics_endpoint(request: Request) -> Response:
        if not metrics_allowed(request, metrics_settings, production=settings.is_production):
            return JSONResponse({"errors": [{"message": "Not found / 未找到", "extensions": {"code": "NOT_FOUND"}}]},
                                status_code=404)
        try:
            await ledger_gauges.refresh()
        except Exception:  # noqa: BLE001 - the other series are still worth answering
            log.warning("ledger totals could not be read for /metrics", exc_info=True)
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        restore_gc = tune_gc(settings.operations.gc_thresholds) if settings.gc_tuning_enabled else None
        await services.live.start()  # PostgreSQL: this process's LISTEN connection
        task = asyncio.create_task(run_periodically(services))
        restore_signals = state.install_drain(settings.operations.shutdown_drain_seconds)
        try:
            yield
        finally:
            restore_signals()
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await buckets.aclose()
            await services.live.aclose()
            await services.db.dispose()
            metrics.mark_process_dead()
            tracing.shutdown()
            if restore_gc is not None:
                restore_gc()

    app = Starlette(
        routes=[
            Route("/graphql", graphql_app, methods=["GET", "POST"]),
            *([WebSocketRoute("/graphql", graphql_app)] if settings.live.enabled else []),
            *([Mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="graphiql-assets")]
              if settings.graphiql_enabled else []),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            *([Route("/metrics", metrics_endpoint)] if metrics_settings.enabled else []),
            Route("/privacy/exports/{export_id:int}", download_export, methods=["GET"]),
            *media_routes(services),
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.schema = schema
    app.state.persisted = persisted
    app.state.buckets = buckets
    app.state.graphql_app = graphql_app
    app.state.serving = state
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.limits.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    return app
