"""Structured logs: one JSON object per line, carrying the request id of the current request.

Secrets never reach a log line: :func:`redact` runs over the message, every extra field and the
exception text. Fields whose name says they hold a secret (password, token, secret, authorization,
cookie, api key, ``code``/``*_code`` such as redemption or verification codes, except error and plugin
codes) are replaced whole; in free text, bearer credentials, API tokens (``jt_…``), JWTs, passwords in
URLs and ``password=…``/``"token": "…"`` pairs are masked.
"""

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("jingtan_request_id", default=None)

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

REDACTED = "[REDACTED]"
_SECRET_KEY = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|authorization|cookie|api[_-]?key|credential|(^|_)(code|otp|pin))$",
    re.IGNORECASE,
)
_SAFE_KEYS = {"error_code", "error_codes", "plugin_code", "status_code", "sqlstate", "exit_code"}
_TEXT_PATTERNS = [
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + REDACTED),
    (re.compile(r"\bjt_[A-Za-z0-9_-]{8,}"), "jt_" + REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1" + REDACTED + "@"),
    (
        re.compile(
            r"(?i)(\b(?:password|passwd|secret|token|access_token|refresh_token|api_key|code)\b[\"']?\s*[:=]\s*[\"']?)"
            r"[^\"'\s,&;}]+"
        ),
        r"\1" + REDACTED,
    ),
]


def _secret_key(key: str) -> bool:
    return key.lower() not in _SAFE_KEYS and bool(_SECRET_KEY.search(key.replace("-", "_")))


def redact_text(text: str) -> str:
    for pattern, replacement in _TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any, key: str | None = None) -> Any:
    """``value`` with secrets masked (``key``: the field name it is logged under)."""
    if key is not None and _secret_key(key) and value not in (None, "", [], {}):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
        }
        request_id = request_id_var.get()
        if request_id:
            data["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = redact(value, key)
        if record.exc_info:
            data["exc"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False, default=str)


class RedactingFormatter(logging.Formatter):
    """The plain-text format, with the same redaction."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def _formatter(json_format: bool) -> logging.Formatter:
    return JsonFormatter() if json_format else RedactingFormatter("%(levelname)s %(name)s %(message)s")


def configure_logging(level: str = "INFO", json_format: bool = True) -> None:
    root = logging.getLogger("jingtan")
    root.setLevel(level)
    if any(getattr(h, "_jingtan", False) for h in root.handlers):
        for h in root.handlers:
            if getattr(h, "_jingtan", False):
                h.setFormatter(_formatter(json_format))
        return
    handler = logging.StreamHandler(sys.stderr)
    handler._jingtan = True  # type: ignore[attr-defined]
    handler.setFormatter(_formatter(json_format))
    root.addHandler(handler)
    root.propagate = True
