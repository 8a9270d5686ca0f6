"""The core's built-in message senders, registered through ``jingtan_register_message_senders`` like a
plugin's (docs/identity.md, "Senders"):

* ``development`` — logs each message, keeps the last ones in memory (tests read ``last_code``) and, when
  ``[identity] development_outbox_file`` is set, appends them as JSON lines (for tests that run real
  server processes). Never for production: the code is in the log.
* ``http_gateway`` — POSTs ``{"to", "templateId", "params": {"code", "minutes"}}`` as JSON with
  ``Authorization: Bearer <sms_gateway_key>`` to ``[identity] sms_gateway_url``; any non-2xx answer or
  transport error is :class:`SendFailed`. Registered only when the URL is set.
"""

import json
import logging
from collections import deque

import httpx

from jingtan_api.plugins.api import PLUGIN_API_VERSION, Channel, MessageSender, OutgoingMessage, SendFailed, hookimpl
from jingtan_api.settings import IdentitySettings, Settings

log = logging.getLogger("jingtan.identity.senders")


class DevelopmentSender:
    name = "development"
    channels = frozenset({Channel.SMS, Channel.EMAIL})
    plugin_api_version = PLUGIN_API_VERSION

    def __init__(self, outbox_file: str | None = None, keep: int = 200) -> None:
        self.outbox: deque[OutgoingMessage] = deque(maxlen=keep)
        self.outbox_file = outbox_file

    async def send(self, message: OutgoingMessage) -> None:
        self.outbox.append(message)
        log.info("development sender: %s to %s: %s", message.purpose, message.destination, message.text)
        if self.outbox_file:
            record = {"channel": message.channel.value, "destination": message.destination,
                      "purpose": message.purpose, "code": message.code, "text": message.text}
            with open(self.outbox_file, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")

    def messages_to(self, destination: str) -> list[OutgoingMessage]:
        return [m for m in self.outbox if m.destination == destination]

    def last_code(self, destination: str, purpose: str | None = None) -> str | None:
        """The code of the newest message to ``destination`` (of ``purpose``, when given)."""
        for message in reversed(self.outbox):
            if message.destination == destination and message.code and purpose in (None, message.purpose):
                return message.code
        return None


class HttpSmsGatewaySender:
    name = "http_gateway"
    channels = frozenset({Channel.SMS})
    plugin_api_version = PLUGIN_API_VERSION

    def __init__(self, cfg: IdentitySettings) -> None:
        assert cfg.sms_gateway_url
        self.url = cfg.sms_gateway_url
        self.key = cfg.sms_gateway_key
        self.template_id = cfg.sms_gateway_template_id
        self.notice_template_id = cfg.sms_gateway_notice_template_id or cfg.sms_gateway_template_id
        self.timeout = cfg.sms_gateway_timeout_seconds

    async def send(self, message: OutgoingMessage) -> None:
        template = self.template_id if message.code else self.notice_template_id
        body = {
            "to": message.destination,
            "templateId": template,
            "params": {"code": message.code or "", "minutes": message.ttl_minutes},
            "purpose": message.purpose,
        }
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(self.url, json=body, headers={"Authorization": f"Bearer {self.key}"})
        except httpx.HTTPError as exc:
            raise SendFailed(f"SMS gateway unreachable: {type(exc).__name__}") from None
        if not 200 <= response.status_code < 300:
            raise SendFailed(f"SMS gateway answered {response.status_code}")


@hookimpl
def jingtan_register_message_senders(settings: Settings) -> list[MessageSender]:
    cfg = settings.identity
    senders: list[MessageSender] = [DevelopmentSender(cfg.development_outbox_file)]
    if cfg.sms_gateway_url:
        senders.append(HttpSmsGatewaySender(cfg))
    return senders
