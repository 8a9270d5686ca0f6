"""Helpers of the impact, leaderboard, report and challenge tests."""

import itertools

from actions_helpers import submit, trip
from sqlalchemy import event

_seq = itertools.count()


async def approved_trip(gql, who: dict, clock, *, meters: int = 3000, minutes_ago: int | None = None) -> int:
    """Submit one metro trip that is approved; returns its grams CO2e."""
    n = next(_seq)
    # Within the frozen clock's day (Asia/Shanghai), 25 minutes apart: a member's next 12 trips never overlap.
    ago = minutes_ago if minutes_ago is not None else 30 + 25 * (n % 12)
    result = await submit(gql, who["token"], "transit",
                          trip(clock, minutes_ago=ago, duration_min=20, meters=meters), key=f"trip-{n}")
    assert result["userErrors"] == [], result
    assert result["action"]["status"] == "APPROVED", result
    return result["action"]["calculation"]["gramsCo2e"]


class StatementCounter:
    """Counts the SQL statements an engine executes inside ``with counter:``."""

    def __init__(self, services) -> None:
        self.engine = services.db.engine.sync_engine
        self.statements: list[str] = []

    def _count(self, conn, cursor, statement, *args) -> None:
        self.statements.append(statement)

    def __enter__(self) -> "StatementCounter":
        self.statements.clear()
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc) -> None:
        event.remove(self.engine, "before_cursor_execute", self._count)

    @property
    def count(self) -> int:
        return len(self.statements)
