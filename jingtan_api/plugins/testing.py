"""Test helpers for plugin authors (and our own tests).

* :func:`make_context` — a :class:`PluginContext` over an in-memory :class:`FakeHistory`, for unit tests of
  ``verify`` / ``calculate`` without a database.
* :class:`PluginHarness` — a real app on a fresh migrated SQLite database with exactly the given plugins:
  ``async with PluginHarness([my_plugin], settings={"my_code": {...}}) as h: await h.submit(...)``.
* pytest fixtures ``plugin_clock`` and ``plugin_harness`` (a factory): add
  ``pytest_plugins = ["jingtan_api.plugins.testing"]`` to your conftest.py.
"""

import asyncio
import itertools
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from jingtan_api.plugins.api import ActionRecord, ActionType, HistorySource, PluginContext, Status

_ids = itertools.count(1)


class FakeHistory(HistorySource):
    """History held in a list of :class:`ActionRecord`; ``add`` records more."""

    def __init__(self, records: Sequence[ActionRecord] = (), fingerprints: Sequence[str] = ()) -> None:
        self.records = list(records)
        self.fingerprints = set(fingerprints)

    def add(self, *, member_id: int = 1, input: dict, occurred_from: datetime, occurred_to: datetime | None = None,
            status: Status = Status.APPROVED, grams_co2e: int = 0, points: int = 0, subject: str | None = None) -> ActionRecord:
        record = ActionRecord(
            id=next(_ids), member_id=member_id, status=status, input=input, occurred_from=occurred_from,
            occurred_to=occurred_to or occurred_from, subject=subject, grams_co2e=grams_co2e, points=points,
            created_at=occurred_from,
        )
        self.records.append(record)
        return record

    async def member_actions(self, code, member_id, start, end, statuses) -> list[ActionRecord]:
        return sorted(
            (r for r in self.records
             if r.member_id == member_id and r.status in statuses
             and (start is None or r.occurred_to > start) and (end is None or r.occurred_from < end)),
            key=lambda r: (r.occurred_from, r.id),
        )

    async def subject_actions(self, code, subject, statuses) -> list[ActionRecord]:
        return sorted((r for r in self.records if r.subject == subject and r.status in statuses),
                      key=lambda r: (r.occurred_from, r.id))

    async def evidence_seen(self, code, fingerprint) -> bool:
        return fingerprint in self.fingerprints


def make_context(
    action_type: ActionType,
    *,
    settings: dict | Any = None,
    member_id: int = 1,
    now: datetime | None = None,
    history: FakeHistory | None = None,
    timezone: str = "Asia/Shanghai",
    claim_window_days: int = 7,
    grams_per_point: int = 10,
) -> PluginContext:
    """A context for unit tests; ``settings`` may be a dict (validated by the plugin's Settings model)."""
    if settings is None or isinstance(settings, dict):
        settings = action_type.Settings.model_validate(settings or {})
    return PluginContext(
        code=action_type.code,
        member_id=member_id,
        now=now or datetime(2026, 6, 1, 8, 0, tzinfo=UTC),
        settings=settings,
        timezone=ZoneInfo(timezone),
        claim_window=timedelta(days=claim_window_days),
        grams_per_point=grams_per_point,
        history=history or FakeHistory(),
    )


SUBMIT = """
mutation Submit($input: SubmitActionInput!) {
  submitAction(input: $input) {
    replayed
    action { id status actionTypeCode reasons { code message }
             calculation { formula gramsCo2e points factors { id value unit source } } }
    userErrors { code message field }
  }
}
"""


class PluginHarness:
    """A real app (fresh SQLite database) with exactly ``plugins``; a registered member to submit as."""

    def __init__(self, plugins: Sequence[Any], *, settings: dict | None = None, now: datetime | None = None,
                 workdir: Path | None = None, **overrides: Any) -> None:
        from jingtan_api.testing import FrozenClock

        self.plugins = list(plugins)
        self.plugin_settings = settings or {}
        self.overrides = overrides
        self.clock = FrozenClock(now)
        self._tmp = None if workdir else tempfile.TemporaryDirectory()
        self.workdir = workdir or Path(self._tmp.name)
        self.app = None
        self.gql = None
        self.member: dict = {}
        self._lifespan = None

    async def __aenter__(self) -> "PluginHarness":  # noqa: PYI034
        from jingtan_api.app import create_app
        from jingtan_api.migrate import upgrade
        from jingtan_api.testing import GraphQLClient, make_settings, register_member

        url = f"sqlite+aiosqlite:///{self.workdir / f'plugin-{next(_ids)}.db'}"
        await asyncio.to_thread(upgrade, url)
        settings = make_settings(url, plugins={"enabled": [], **self.plugin_settings}, **self.overrides)
        self.app = create_app(settings, plugins=self.plugins, clock=self.clock)
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        self.gql = GraphQLClient(self.app)
        self.member = await register_member(self.gql, email="plugin-tester@example.cn", display_name="Tester")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.gql is not None:
            await self.gql.aclose()
        if self._lifespan is not None:
            await self._lifespan.__aexit__(*exc)
        if self._tmp is not None:
            self._tmp.cleanup()

    async def submit(self, field: str, data: dict, *, key: str | None = None, evidence: dict | None = None,
                     token: str | None = None) -> dict:
        """Submit ``{field: data}`` as the harness member; returns the ``submitAction`` payload."""
        variables = {"input": {"action": {field: data}, "idempotencyKey": key or f"k-{next(_ids)}"}}
        if evidence is not None:
            variables["input"]["evidence"] = evidence
        body = await self.gql(SUBMIT, variables, token=token or self.member["token"])
        if body.get("errors"):
            return {"errors": body["errors"]}
        return body["data"]["submitAction"]

    async def balance(self) -> int:
        data = await self.gql.ok("{ viewer { account { balance } } }", token=self.member["token"])
        return data["viewer"]["account"]["balance"]


@pytest.fixture
def plugin_clock():
    from jingtan_api.testing import FrozenClock

    return FrozenClock()


@pytest.fixture
def plugin_harness(tmp_path) -> Any:
    """Factory: ``async with plugin_harness([plugin], settings={...}) as h: ...``."""

    def factory(plugins: Sequence[Any], **kwargs: Any) -> PluginHarness:
        kwargs.setdefault("workdir", tmp_path)
        return PluginHarness(plugins, **kwargs)

    return factory


__all__ = ["SUBMIT", "FakeHistory", "PluginHarness", "make_context", "plugin_clock", "plugin_harness"]
