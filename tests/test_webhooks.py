"""Signed webhooks: outbox rows written with the event, delivered to a real local HTTP receiver."""

import asyncio
import hashlib
import hmac
import http.server
import json
import threading
import time

import pytest
from sqlalchemy import func, select

from jingtan_api import events
from jingtan_api.errors import ValidationFailed
from jingtan_api.testing import make_settings
from jingtan_api.webhooks import service
from jingtan_api.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


class Receiver:
    """A threaded http.server answering ``self.mode``: 200, 500 or sleep past the client's timeout."""

    def __init__(self) -> None:
        self.mode = "200"
        self.received: list[tuple[dict, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                outer.received.append((dict(self.headers), body))
                if outer.mode == "sleep":
                    time.sleep(1.5)
                code = 500 if outer.mode == "500" else 200
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"x" * 10000)

            def log_message(self, *a) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def settings_overrides() -> dict:
    return {"webhooks": {"max_attempts": 2, "base_backoff_seconds": 0, "timeout_seconds": 0.5}}


async def count(services, model) -> int:
    async with services.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(model.__table__))).scalar_one()


async def emit(services, event_type: str, **data) -> None:
    await services.db.write(lambda conn: events.emit(conn, event_type, **data))


async def test_signed_delivery_verifies(services, receiver):
    ep = await service.create_endpoint(services, url=receiver.url, event_types=["user.registered"], merchant_id=None,
                                       created_by=None)
    await emit(services, "user.registered", user_id=1)
    assert await count(services, WebhookDelivery) == 1
    assert (await service.deliver_due(services))["delivered"] == 1
    headers, body = receiver.received[0]
    t, v1 = (p.split("=", 1)[1] for p in headers["Jingtan-Signature"].split(","))
    assert t == headers["Jingtan-Timestamp"]
    assert hmac.compare_digest(v1, hmac.new(ep["secret"].encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest())
    assert json.loads(body)["id"] == headers["Jingtan-Event-Id"]
    async with services.db.read() as conn:
        att = (await conn.execute(select(WebhookAttempt.__table__))).one()
    assert att.status_code == 200 and len(att.response_body) == 4096
    # Nothing left to deliver: a second pass sends nothing.
    assert (await service.deliver_due(services))["delivered"] == 0
    assert len(receiver.received) == 1


@pytest.mark.parametrize("mode", ["500", "sleep"])
async def test_retried_then_failed_then_replayed(services, receiver, mode):
    await service.create_endpoint(services, url=receiver.url, event_types=["user.registered"], merchant_id=None,
                                  created_by=None)
    receiver.mode = mode
    await emit(services, "user.registered", user_id=1)
    assert (await service.deliver_due(services))["retrying"] == 1
    assert (await service.deliver_due(services))["failed"] == 1
    assert (await service.deliver_due(services)) == {"delivered": 0, "retrying": 0, "failed": 0}
    async with services.db.read() as conn:
        d = (await conn.execute(select(WebhookDelivery.__table__))).one()
        errors = [r.error for r in await conn.execute(select(WebhookAttempt.__table__))]
    assert d.status == "FAILED" and d.attempts == 2
    assert errors == (["timeout", "timeout"] if mode == "sleep" else [None, None])
    receiver.mode = "200"
    await service.replay(services, d.id)
    assert (await service.deliver_due(services))["delivered"] == 1
    ids = {h["Jingtan-Event-Id"] for h, _ in receiver.received}
    assert ids == {d.event_id}
    assert await count(services, WebhookAttempt) == 3


async def test_rolled_back_event_writes_nothing(services, receiver):
    await service.create_endpoint(services, url=receiver.url, event_types=["user.registered"], merchant_id=None,
                                  created_by=None)

    async def boom(conn):
        await events.emit(conn, "user.registered", user_id=1)
        raise ValidationFailed("no", code="X")

    with pytest.raises(ValidationFailed):
        await services.db.write(boom)
    assert await count(services, WebhookDelivery) == 0


async def test_merchant_endpoint_sees_only_its_merchant(services, receiver):
    with pytest.raises(ValidationFailed) as exc:
        await service.create_endpoint(services, url=receiver.url, event_types=["user.registered"], merchant_id=1,
                                      created_by=None)
    assert exc.value.code == "UNKNOWN_EVENT_TYPE"
    assert await count(services, WebhookEndpoint) == 0


@pytest.mark.parametrize(("url", "types", "code"), [
    ("ftp://example.cn/x", ["user.registered"], "INVALID_URL"),
    ("http:///nohost", ["user.registered"], "INVALID_URL"),
    ("http://example.cn:99999/", ["user.registered"], "INVALID_URL"),
    ("http://example.cn/", ["user.exploded"], "UNKNOWN_EVENT_TYPE"),
    ("http://example.cn/", [], "NO_EVENT_TYPES"),
])
async def test_bad_input_writes_nothing(services, url, types, code):
    with pytest.raises(ValidationFailed) as exc:
        await service.create_endpoint(services, url=url, event_types=types, merchant_id=None, created_by=None)
    assert exc.value.code == code
    assert await count(services, WebhookEndpoint) == 0


@pytest.mark.parametrize("url", ["http://127.0.0.1/", "http://10.1.2.3/", "http://169.254.169.254/", "http://[::1]/",
                                 "http://224.0.0.1/", "http://localhost/"])
async def test_private_address_refused_in_production(services, url, db_url):
    prod = make_settings(db_url, mode="production", secret_key="s" * 40)
    with pytest.raises(ValidationFailed) as exc:
        await service.validate_url(url, prod)
    assert exc.value.code == "UNSAFE_ADDRESS"
    # ... and re-checked at every attempt after DNS resolution (the endpoint was registered earlier).
    out = await service.post(url, "secret", {"payload": "{}", "event_id": "evt_1", "event_type": "user.registered"}, prod)
    assert out["status_code"] is None and out["error"].startswith("UNSAFE_ADDRESS")


async def test_two_workers_cannot_claim_the_same_attempt(services, receiver):
    await service.create_endpoint(services, url=receiver.url, event_types=["user.registered"], merchant_id=None,
                                  created_by=None)
    await emit(services, "user.registered", user_id=1)
    async with services.db.read() as conn:
        delivery_id = (await conn.execute(select(WebhookDelivery.id))).scalar_one()
    now = services.clock()
    won = [await services.db.write(lambda c, h=h: service.claim(c, delivery_id, h, now=now, lease=60)) for h in ("a", "b")]
    assert won == [True, False]
    # The claimed delivery is skipped by another worker's pass.
    assert (await service.deliver_due(services))["delivered"] == 0
    assert receiver.received == []


# --- DNS rebinding: one resolution per attempt, the connection goes to the vetted address -------------

class StubResolver:
    """Stands in for ``service.resolve_host``: answers ``answers[i]`` to the i-th call (the last one after)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        return self.answers[min(len(self.calls), len(self.answers)) - 1]


async def test_attempt_connects_to_the_address_it_resolved(services, receiver, monkeypatch):
    port = receiver.server.server_port
    stub = StubResolver(["127.0.0.1"])
    monkeypatch.setattr(service, "resolve_host", stub)
    # .test names never resolve in the real DNS: the POST reaches the receiver only through the stub's answer.
    await service.create_endpoint(services, url=f"http://hooks.example.test:{port}/hook", event_types=["user.registered"],
                                  merchant_id=None, created_by=None)
    await emit(services, "user.registered", user_id=1)
    assert (await service.deliver_due(services))["delivered"] == 1
    headers, _ = receiver.received[0]
    assert headers["Host"] == f"hooks.example.test:{port}"  # the receiver still sees its own name
    assert stub.calls == [("hooks.example.test", port)]  # resolved once (registration does not resolve in development)


async def test_name_re_pointed_after_registration_is_refused_at_the_attempt(services, receiver, monkeypatch):
    port = receiver.server.server_port
    stub = StubResolver(["93.184.216.34"], ["127.0.0.1"])  # public when registered, then re-pointed at loopback
    monkeypatch.setattr(service, "resolve_host", stub)
    services.settings.webhooks.allow_private_addresses = False
    await service.create_endpoint(services, url=f"http://hooks.example.test:{port}/hook", event_types=["user.registered"],
                                  merchant_id=None, created_by=None)
    await emit(services, "user.registered", user_id=1)
    assert (await service.deliver_due(services))["retrying"] == 1
    async with services.db.read() as conn:
        attempt = (await conn.execute(select(WebhookAttempt.__table__))).one()
    assert attempt.status_code is None and attempt.error.startswith("UNSAFE_ADDRESS")
    assert receiver.received == []
    assert len(stub.calls) == 2  # once at registration, once for the attempt: nothing resolved after the check


async def test_mixed_answer_with_one_private_address_is_refused(services, monkeypatch):
    monkeypatch.setattr(service, "resolve_host", StubResolver(["93.184.216.34", "10.0.0.5"]))
    services.settings.webhooks.allow_private_addresses = False
    with pytest.raises(ValidationFailed) as exc:
        await service.vetted_address("hooks.example.test", 443, services.settings)
    assert exc.value.code == "UNSAFE_ADDRESS"


def test_pinned_request_keeps_host_header_and_tls_server_name():
    url, headers, extensions = service.pinned_request("https://hooks.example.cn:8443/in?x=1", "203.0.113.7")
    assert str(url) == "https://203.0.113.7:8443/in?x=1"
    assert headers == {"Host": "hooks.example.cn:8443"} and extensions == {"sni_hostname": "hooks.example.cn"}
    url, headers, extensions = service.pinned_request("http://hooks.example.cn/in", "2001:db8::1")
    assert str(url) == "http://[2001:db8::1]/in" and headers == {"Host": "hooks.example.cn"} and extensions == {}


async def test_a_resolver_that_never_answers_is_a_timeout(services, monkeypatch):
    async def hangs(host: str, port: int) -> list[str]:
        await asyncio.Event().wait()
        return []

    monkeypatch.setattr(service, "resolve_host", hangs)
    out = await service.post("http://hooks.example.test/", "secret",
                             {"payload": "{}", "event_id": "evt_1", "event_type": "user.registered"}, services.settings)
    assert out["status_code"] is None and out["error"] == "timeout"
