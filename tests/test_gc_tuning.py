"""The garbage collector tuned at startup (operations.gc_tuning, jingtan_api.app.tune_gc): in production
(or when asked) the lifespan freezes what the app has built and raises the collection thresholds, and
puts both back when the app stops; in development nothing changes. Timings are in bench/, not here."""

import gc

import pytest
from pydantic import ValidationError

from jingtan_api.app import create_app
from jingtan_api.testing import make_settings


@pytest.mark.parametrize(
    "mode, flag, tuned",
    [("production", None, True), ("production", False, False), ("development", None, False), ("development", True, True)],
)
async def test_lifespan_tunes_the_collector_and_restores_it(db_url, clock, mode, flag, tuned):
    operations = {"gc_thresholds": (40_000, 15, 90)} | ({} if flag is None else {"gc_tuning": flag})
    extra = {"secret_key": "k" * 40} if mode == "production" else {}
    settings = make_settings(db_url, mode=mode, operations=operations, **extra)
    assert settings.gc_tuning_enabled is tuned
    before_threshold, before_frozen = gc.get_threshold(), gc.get_freeze_count()
    application = create_app(settings, clock=clock)
    async with application.router.lifespan_context(application):
        if tuned:
            assert gc.get_threshold() == (40_000, 15, 90)
            assert gc.get_freeze_count() > before_frozen  # the app's objects are out of the collector's sight
        else:
            assert gc.get_threshold() == before_threshold
            assert gc.get_freeze_count() == before_frozen
    assert gc.get_threshold() == before_threshold
    if tuned:
        assert gc.get_freeze_count() == 0  # unfrozen: the next test's collections see them again


@pytest.mark.parametrize("bad", [(0, 10, 10), (700, -1, 10)])
def test_thresholds_must_be_positive(bad):
    with pytest.raises(ValidationError, match="gc_thresholds"):
        make_settings("sqlite+aiosqlite:///:memory:", operations={"gc_thresholds": bad})
