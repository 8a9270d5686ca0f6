"""Application services (one set per app instance) and the per-request GraphQL context."""

from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.requests import Request
from strawberry.dataloader import DataLoader

from jingtan_api.auth.passwords import Passwords
from jingtan_api.auth.permissions import Viewer
from jingtan_api.auth.tokens import AccessTokens
from jingtan_api.db import Database, utcnow
from jingtan_api.settings import Settings
from jingtan_api.users.service import UserService

Clock = Callable[[], datetime]


@dataclass
class Services:
    """Everything a request may use; built once by ``create_app``. No module-level globals, so several
    apps (different settings, databases or plugin sets) can live side by side in one process."""

    settings: Settings
    db: Database
    passwords: Passwords
    access_tokens: AccessTokens
    users: UserService
    clock: Clock = utcnow
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings, *, clock: Clock = utcnow) -> "Services":
        db = Database(
            settings.database_url,
            pool_size=settings.database_pool_size,
            echo=settings.database_echo,
            busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        )
        passwords = Passwords(
            time_cost=settings.auth.argon2_time_cost,
            memory_cost_kib=settings.auth.argon2_memory_cost_kib,
            parallelism=settings.auth.argon2_parallelism,
            min_length=settings.auth.password_min_length,
        )
        access = AccessTokens(settings, clock)
        return cls(
            settings=settings,
            db=db,
            passwords=passwords,
            access_tokens=access,
            users=UserService(db, settings, passwords, access),
            clock=clock,
        )


class Context:
    """``info.context`` of every resolver."""

    def __init__(self, services: Services, request: Request | None, viewer: Viewer, request_id: str) -> None:
        self.services = services
        self.settings = services.settings
        self.db = services.db
        self.request = request
        self.viewer = viewer
        self.request_id = request_id
        self._loaders: dict[Hashable, DataLoader] = {}
        self._now: datetime | None = None

    def now(self) -> datetime:
        """One clock reading per request, so every resolver sees the same 'now'."""
        if self._now is None:
            self._now = self.services.clock()
        return self._now

    def loader(self, name: Hashable, batch: Callable[[Sequence[Any]], Awaitable[dict[Any, Any]]]) -> DataLoader:
        """A per-request DataLoader; ``batch(keys)`` returns {key: value} (missing keys load as None)."""
        loader = self._loaders.get(name)
        if loader is None:

            async def load_fn(keys: list[Any]) -> list[Any]:
                found = await batch(keys)
                return [found.get(k) for k in keys]

            loader = self._loaders[name] = DataLoader(load_fn=load_fn)
        return loader

    async def read(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        async with self.db.read() as conn:
            return await fn(conn, *args, **kwargs)
