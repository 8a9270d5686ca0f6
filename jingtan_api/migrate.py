"""Programmatic alembic: ``upgrade`` to head, compare the database with the models."""

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("version_path_separator", "os")
    cfg.attributes["database_url"] = database_url
    return cfg


def ensure_sqlite_directory(database_url: str) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def upgrade(database_url: str, revision: str = "heads") -> None:
    """Run without a running event loop (alembic's env.py starts its own)."""
    ensure_sqlite_directory(database_url)
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def revision(database_url: str, message: str, rev_id: str) -> None:
    command.revision(alembic_config(database_url), message=message, autogenerate=True, rev_id=rev_id)
