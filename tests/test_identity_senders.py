"""The message sender hook (``jingtan_register_message_senders``): a plugin's sender chosen by
``[identity] sms_sender``, startup errors naming the plugin, and the built-in HTTP SMS-gateway sender
against a local fake gateway (SQLite and PostgreSQL)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from identity_helpers import LOGIN_WITH_CODE, REQUEST_LOGIN, outbox, unchanged_except
from jingtan_api.app import create_app
from jingtan_api.identity.models import VerificationCode
from jingtan_api.plugins.api import PLUGIN_API_VERSION, Channel, OutgoingMessage, SendFailed, hookimpl
from jingtan_api.settings import ConfigurationError
from jingtan_api.testing import GraphQLClient, free_port, make_settings, register_member, row_counts


class Pigeon:
    """A sender plugin as docs/identity.md shows it."""

    name = "pigeon"
    channels = frozenset({Channel.SMS})
    plugin_api_version = PLUGIN_API_VERSION

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []

    async def send(self, message: OutgoingMessage) -> None:
        if message.destination.endswith("0000"):
            raise SendFailed("carrier refused")
        self.sent.append(message)


class PigeonPlugin:
    def __init__(self, sender: object) -> None:
        self.sender = sender

    @hookimpl
    def jingtan_register_message_senders(self, settings):
        assert settings.identity.sms_sender == "pigeon"
        return [self.sender]


async def test_hook_jingtan_register_message_senders(db_url, clock):
    pigeon = Pigeon()
    settings = make_settings(db_url, identity={"sms_sender": "pigeon"})
    app = create_app(settings, clock=clock, plugins=[("pigeon-post", PigeonPlugin(pigeon))])
    async with app.router.lifespan_context(app):
        gql = GraphQLClient(app)
        services = app.state.services
        assert services.plugins.sender_plugins == {"development": "jingtan-builtin-senders", "pigeon": "pigeon-post"}
        member = await register_member(gql, phone="13800138201")
        data = await gql.ok(REQUEST_LOGIN, {"i": {"identifier": "13800138201"}})
        assert data["requestLoginCode"]["userErrors"] == []
        [message] = pigeon.sent
        assert (message.channel, message.destination, message.purpose) == (Channel.SMS, "+8613800138201", "LOGIN")
        assert message.code in message.text and "验证码" in message.text and "login code" in message.text
        assert outbox(services).messages_to("+8613800138201") == []  # the development sender was not used
        data = await gql.ok(LOGIN_WITH_CODE, {"i": {"identifier": "13800138201", "code": message.code}})
        assert data["loginWithCode"]["user"]["id"] == member["id"]
        # A sender's failure: SEND_FAILED, and the code is withdrawn (it could not be used anyway).
        await register_member(gql, phone="13800130000")
        data = await gql.ok(REQUEST_LOGIN, {"i": {"identifier": "13800130000"}})
        assert data["requestLoginCode"]["errors"] == [{"code": "SEND_FAILED"}]
        VC = VerificationCode.__table__
        async with services.db.read() as conn:
            row = (await conn.execute(select(VC).where(VC.c.destination == "+8613800130000"))).one()
        assert row.superseded_at is not None
        await gql.aclose()


class SyncSender:
    name = "sync_sender"
    channels = frozenset({Channel.SMS})
    plugin_api_version = PLUGIN_API_VERSION

    def send(self, message):  # not async
        return None


class FutureSender(Pigeon):
    name = "future"
    plugin_api_version = "1.99"


class NoChannels(Pigeon):
    name = "nochannels"
    channels = frozenset()


@pytest.mark.parametrize(("senders", "sms_sender", "message"), [
    ([], "pigeon", "[identity] sms_sender = 'pigeon': no such message sender (registered: development)"),
    ([SyncSender()], "development", "message sender 'sync_sender' has no async send(message)"),
    ([FutureSender()], "development", "needs plugin API 1.99, this server provides"),
    ([NoChannels()], "development", "channels must be a non-empty set of Channel"),
    ([Pigeon(), Pigeon()], "pigeon", "message sender 'pigeon' is already provided by 'bad-plugin'"),
])
def test_hook_jingtan_register_message_senders_startup_errors(tmp_path, senders, sms_sender, message):
    class Bad:
        @hookimpl
        def jingtan_register_message_senders(self):
            return senders

    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path}/x.db", identity={"sms_sender": sms_sender})
    with pytest.raises(ConfigurationError) as caught:
        create_app(settings, plugins=[("bad-plugin", Bad())])
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_an_email_only_channel_cannot_be_the_sms_sender(tmp_path):
    class Mailer(Pigeon):
        name = "mailer"
        channels = frozenset({Channel.EMAIL})

    class Plugin:
        @hookimpl
        def jingtan_register_message_senders(self):
            return [Mailer()]

    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path}/x.db", identity={"sms_sender": "mailer"})
    with pytest.raises(ConfigurationError, match="this sender cannot deliver SMS"):
        create_app(settings, plugins=[("mail", Plugin())])


class FakeGateway:
    """A local SMS gateway: records each request; answers ``status``."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                gateway.requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                         "json": json.loads(body)})
                self.send_response(gateway.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeGateway":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_http_sms_gateway_sender_against_a_local_fake_gateway(db_url, clock):
    with FakeGateway() as gateway:
        settings = make_settings(db_url, identity={
            "sms_sender": "http_gateway", "sms_gateway_url": f"http://127.0.0.1:{gateway.port}/v1/sms",
            "sms_gateway_key": "gw-key-123", "sms_gateway_template_id": "SMS_0420",
        })
        app = create_app(settings, clock=clock)
        async with app.router.lifespan_context(app):
            gql = GraphQLClient(app)
            services = app.state.services
            member = await register_member(gql, phone="13800138202")
            data = await gql.ok(REQUEST_LOGIN, {"i": {"identifier": "13800138202"}})
            assert data["requestLoginCode"]["userErrors"] == []
            [request] = gateway.requests
            assert request["path"] == "/v1/sms" and request["auth"] == "Bearer gw-key-123"
            body = request["json"]
            assert body["to"] == "+8613800138202" and body["templateId"] == "SMS_0420"
            assert body["params"]["minutes"] == 5 and len(body["params"]["code"]) == 6
            data = await gql.ok(LOGIN_WITH_CODE, {"i": {"identifier": "13800138202", "code": body["params"]["code"]}})
            assert data["loginWithCode"]["user"]["id"] == member["id"]
            # The gateway refuses: SEND_FAILED; the code row is withdrawn, nothing else is written.
            gateway.status = 503
            clock.advance(seconds=61)
            before = await row_counts(services.db)
            data = await gql.ok(REQUEST_LOGIN, {"i": {"identifier": "13800138202"}})
            assert data["requestLoginCode"]["errors"] == [{"code": "SEND_FAILED"}]
            await unchanged_except(services, before, {"verification_code"})
            data = await gql.ok(LOGIN_WITH_CODE, {"i": {"identifier": "13800138202",
                                                        "code": gateway.requests[-1]["json"]["params"]["code"]}})
            assert data["loginWithCode"]["errors"] == [{"code": "INVALID_CODE"}]
            await gql.aclose()
