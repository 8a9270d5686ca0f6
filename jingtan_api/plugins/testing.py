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
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from starlette.applications import Starlette

from jingtan_api.app import create_app
from jingtan_api.migrate import upgrade
from jingtan_api.plugins.api import ActionRecord, ActionType, HistorySource, PluginContext, SettingsT, Status
from jingtan_api.testing import FrozenClock, GraphQLClient, make_settings, register_member

_ids = itertools.count(1)


class FakeHistory:
    """History held in a list of :class:`ActionRecord`; ``add`` records more. It satisfies
    :class:`HistorySource` structurally, like the core's database-backed history."""

    def __init__(self, records: Sequence[ActionRecord] = (), fingerprints: Sequence[str] = ()) -> None:
        self.records = list(records)
        self.fingerprints = set(fingerprints)

    def add(self, *, member_id: int = 1, input: dict[str, Any], occurred_from: datetime,
            occurred_to: datetime | None = None, status: Status = Status.APPROVED, grams_co2e: int = 0,
            points: int = 0, subject: str | None = None, household_id: int | None = None) -> ActionRecord:
        record = ActionRecord(
            id=next(_ids), member_id=member_id, status=status, input=input, occurred_from=occurred_from,
            occurred_to=occurred_to or occurred_from, subject=subject, grams_co2e=grams_co2e, points=points,
            created_at=occurred_from, household_id=household_id,
        )
        self.records.append(record)
        return record

    async def member_actions(
        self, code: str, member_id: int, start: datetime | None, end: datetime | None, statuses: Sequence[Status]
    ) -> list[ActionRecord]:
        return sorted(
            (r for r in self.records
             if r.member_id == member_id and r.status in statuses
             and (start is None or r.occurred_to > start) and (end is None or r.occurred_from < end)),
            key=lambda r: (r.occurred_from, r.id),
        )

    async def subject_actions(self, code: str, subject: str, statuses: Sequence[Status]) -> list[ActionRecord]:
        return sorted((r for r in self.records if r.subject == subject and r.status in statuses),
                      key=lambda r: (r.occurred_from, r.id))

    async def evidence_seen(self, code: str, fingerprint: str) -> bool:
        return fingerprint in self.fingerprints


def make_context(
    action_type: ActionType[Any, SettingsT],
    *,
    settings: SettingsT | Mapping[str, Any] | None = None,
    member_id: int = 1,
    now: datetime | None = None,
    history: HistorySource | None = None,
    timezone: str = "Asia/Shanghai",
    claim_window_days: int = 7,
    grams_per_point: int = 10,
    household_id: int | None = None,
) -> PluginContext[SettingsT]:
    """A context for unit tests; ``settings`` may be a dict (validated by the plugin's Settings model),
    ``history`` any :class:`HistorySource` (default: an empty :class:`FakeHistory`)."""
    if settings is None or isinstance(settings, Mapping):
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
        household_id=household_id,
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

    def __init__(self, plugins: Sequence[object], *, settings: dict[str, Any] | None = None,
                 now: datetime | None = None, workdir: Path | None = None, **overrides: Any) -> None:
        self.plugins = list(plugins)
        self.plugin_settings = settings or {}
        self.overrides = overrides
        self.clock = FrozenClock(now)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory()
            workdir = Path(self._tmp.name)
        self.workdir = workdir
        self.app: Starlette | None = None
        self.gql: GraphQLClient | None = None
        self.member: dict[str, Any] = {}
        self._lifespan: AbstractAsyncContextManager[Any] | None = None

    async def __aenter__(self) -> "PluginHarness":  # noqa: PYI034
        url = f"sqlite+aiosqlite:///{self.workdir / f'plugin-{next(_ids)}.db'}"
        await asyncio.to_thread(upgrade, url)
        settings = make_settings(url, plugins={"enabled": [], **self.plugin_settings}, **self.overrides)
        self.app = create_app(settings, plugins=self.plugins, clock=self.clock)
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        self.gql = GraphQLClient(self.app)
        self.member = await register_member(self.gql, email="plugin-tester@example.cn", display_name="Tester")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.gql is not None:
            await self.gql.aclose()
        if self._lifespan is not None:
            await self._lifespan.__aexit__(exc_type, exc, tb)
        if self._tmp is not None:
            self._tmp.cleanup()

    def _client(self) -> "GraphQLClient":
        if self.gql is None:
            raise RuntimeError("use the harness as `async with PluginHarness(...) as h:`")
        return self.gql

    async def submit(self, field: str, data: dict[str, Any], *, key: str | None = None,
                     evidence: dict[str, Any] | None = None, token: str | None = None) -> dict[str, Any]:
        """Submit ``{field: data}`` as the harness member; returns the ``submitAction`` payload."""
        submission: dict[str, Any] = {"action": {field: data}, "idempotencyKey": key or f"k-{next(_ids)}"}
        if evidence is not None:
            submission["evidence"] = evidence
        body = await self._client()(SUBMIT, {"input": submission}, token=token or self.member["token"])
        if body.get("errors"):
            return {"errors": body["errors"]}
        payload: dict[str, Any] = body["data"]["submitAction"]
        return payload

    async def balance(self) -> int:
        data = await self._client().ok("{ viewer { account { balance } } }", token=self.member["token"])
        return int(data["viewer"]["account"]["balance"])


@pytest.fixture
def plugin_clock() -> "FrozenClock":
    return FrozenClock()


@pytest.fixture
def plugin_harness(tmp_path: Path) -> Callable[..., PluginHarness]:
    """Factory: ``async with plugin_harness([plugin], settings={...}) as h: ...``."""

    def factory(plugins: Sequence[object], **kwargs: Any) -> PluginHarness:
        kwargs.setdefault("workdir", tmp_path)
        return PluginHarness(plugins, **kwargs)

    return factory


__all__ = ["SUBMIT", "FakeHistory", "PluginHarness", "make_context", "plugin_clock", "plugin_harness"]
