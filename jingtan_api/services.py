"""The application's shared dependencies, built once per app instance (no GraphQL here).

Domain rules are module functions (``jingtan_api.<domain>.service``). A function that works inside one
transaction takes the connection first (``fn(conn, ...)``, run through ``db.read``/``db.write``); a
workflow that needs several transactions or work outside them (password hashing must not hold SQLite's
writer lock) takes these ``Services`` first (``fn(app, ...)``) and opens its transactions itself.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from jingtan_api.auth.passwords import Passwords
from jingtan_api.auth.tokens import AccessTokens
from jingtan_api.db import Database, utcnow
from jingtan_api.events import EventBus
from jingtan_api.plugins.manager import PluginHost
from jingtan_api.live.broker import InProcessBroker, make_broker
from jingtan_api.live.connections import ConnectionLimits
from jingtan_api.settings import ConfigurationError, Settings

Clock = Callable[[], datetime]

# Modules whose ``register_listeners(bus, app)`` subscribes a domain to domain events (jingtan_api.events),
# in order: listeners of one event run in this order inside the emitting transaction.
LISTENER_MODULES: tuple[str, ...] = (
    "jingtan_api.volunteers.listeners",
    "jingtan_api.merchants.attribution",
    "jingtan_api.campaigns.service",
    "jingtan_api.offers.segments",
    "jingtan_api.impact.listeners",
    "jingtan_api.challenges.listeners",
    "jingtan_api.webhooks.service",
    "jingtan_api.notifications.listeners",
)


@dataclass
class Services:
    """Everything a request or a job may use. No module-level globals, so several apps (different
    settings, databases or plugin sets) can live side by side in one process."""

    settings: Settings
    db: Database
    passwords: Passwords
    access_tokens: AccessTokens
    plugins: PluginHost = field(default_factory=PluginHost)
    clock: Clock = utcnow
    # Ids of platform accounts (issuance, expired) by code; they never change once migrated.
    platform_accounts: dict[str, int] = field(default_factory=dict)
    # Committed events for subscriptions, across processes (jingtan_api.live); started by the server.
    live: InProcessBroker = field(default_factory=InProcessBroker)
    live_connections: ConnectionLimits = field(default_factory=lambda: ConnectionLimits(per_process=1, per_member=1))

    @classmethod
    def build(cls, settings: Settings, *, clock: Clock = utcnow, plugins: PluginHost | None = None) -> "Services":
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
        services = cls(
            settings=settings,
            db=db,
            passwords=passwords,
            access_tokens=AccessTokens(settings, clock),
            plugins=plugins if plugins is not None else PluginHost(),
            clock=clock,
        )
        live = settings.live
        services.live_connections = ConnectionLimits(per_process=live.max_connections_per_process,
                                                     per_member=live.max_connections_per_member)
        if live.enabled:
            try:
                services.live = make_broker(settings.database_url, kind=live.broker, redis_url=live.redis_url,
                                            queue_size=live.queue_size)
            except ValueError as exc:
                raise ConfigurationError(str(exc)) from None
            # After every committed write, in every process (server, jobs, CLI), so that subscribers
            # connected to any API process hear of it.
            services.events.on_commit(services.live.publish)
        for name in LISTENER_MODULES:
            importlib.import_module(name).register_listeners(services.events, services)
        return services

    @property
    def events(self) -> EventBus:
        """The app's domain-event receivers (the database's bus: ``db.write`` publishes after commit)."""
        return self.db.events
