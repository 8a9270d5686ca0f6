"""Domain events: what happened, told to the domains that care, inside the transaction and after it.

A service that changes something others may react to calls :func:`emit` with the connection of its write
transaction (``await events.emit(conn, "action.approved", action_id=7, user_id=3, ...)``). Two kinds of
receiver exist, both registered on the app's :class:`EventBus` (``services.events``, also
``services.db.events``):

* **listeners** (:meth:`EventBus.listen`) run *inside* the emitting transaction, on its connection, in
  registration order: a referral credited when a member's first action is approved, a campaign bonus, a
  commission on a redemption — written atomically with the event, rolled back with it, and re-run with it
  when ``Database.write`` retries the transaction. A listener that raises rolls the whole transaction
  back, so a listener must only raise what the emitting mutation may answer with (a ``DomainError``).
* **publishers** (:meth:`EventBus.on_commit`) receive the events of a transaction *after it committed*,
  once per successful transaction and never for one that rolled back or was retried (the retried attempt
  emits again, and only the committed attempt's events are published). Subscriptions, notifications and
  webhook outboxes that must not see uncommitted work hang here. A publisher's failure is logged and does
  not reach the client: the transaction is already committed.

Domains register their receivers in a ``register_listeners(bus, app)`` function of a module named in
``jingtan_api.services.LISTENER_MODULES`` (the analogue of ``CORE_DOMAINS`` for the schema), so nothing
depends on import order.

Event types emitted by the core (the ``data`` keys are part of the contract; new keys may be added):

=======================  ==========================================================================
``user.registered``      ``user_id``; from the ``register`` mutation also ``client_address, device_id,
                         referral_code`` (the latter two may be None)
``merchant.applied``     ``merchant_id, user_id, volunteer_code`` (None when no volunteer brought it)
``action.recorded``      ``action_id, user_id, plugin_code, status, grams_co2e, points`` — a new action
``action.reviewed``      ``action_id, user_id, plugin_code, status, grams_co2e, points, reviewer_id``
``action.approved``      ``action_id, user_id, plugin_code, grams_co2e, points`` — whenever an action
                         becomes APPROVED (at submission or by review); points credited in the same
                         transaction
``ledger.posted``        ``transaction_id, kind, amounts`` (``{account_id: signed amount}``), ``user_ids``
                         (owners of the member accounts posted to)
``challenge.progressed`` ``challenge_id, user_id, progress, qualified`` — an approved action counted
                         towards a challenge
``redemption.created``   ``redemption_id, member_user_id, merchant_id, offer_id, points, status``
``redemption.confirmed`` same keys
``redemption.cancelled`` same keys, plus ``refunded_points``
``redemption.expired``   same keys, plus ``refunded_points``
``notification.created`` ``notification_id, user_id, kind`` — a new notice in a member's list
                         (``REVIEW_DECISION``, ``POINTS_EXPIRING``, ``REDEMPTION_EXPIRING``; never
                         emitted for a notice that already existed)
=======================  ==========================================================================
"""

import contextvars
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger("jingtan.events")

Listener = Callable[[AsyncConnection, "Event"], Awaitable[None]]
Publisher = Callable[[Sequence["Event"]], Awaitable[None]]


@dataclass(frozen=True)
class Event:
    type: str
    data: Mapping[str, Any]


class EventBus:
    """The receivers of one app. Several apps in one process have separate buses."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}
        self._publishers: list[Publisher] = []

    def listen(self, event_type: str, listener: Listener) -> None:
        """Run ``await listener(conn, event)`` inside every transaction that emits ``event_type``."""
        self._listeners.setdefault(event_type, []).append(listener)

    def on_commit(self, publisher: Publisher) -> None:
        """Run ``await publisher(events)`` after each committed transaction that emitted anything."""
        self._publishers.append(publisher)

    def listeners(self, event_type: str) -> Sequence[Listener]:
        return self._listeners.get(event_type, ())

    @property
    def has_publishers(self) -> bool:
        return bool(self._publishers)

    async def publish_committed(self, events: Sequence[Event]) -> None:
        for publisher in self._publishers:
            try:
                await publisher(events)
            except Exception:  # noqa: BLE001 - the transaction is committed; a receiver's bug is logged
                log.exception("event publisher failed", extra={"events": [e.type for e in events]})


@dataclass
class _Transaction:
    bus: EventBus
    pending: list[Event] = field(default_factory=list)
    memo: dict[str, Any] = field(default_factory=dict)
    before_commit: dict[str, Callable[[AsyncConnection], Awaitable[None]]] = field(default_factory=dict)


_CURRENT: contextvars.ContextVar[_Transaction | None] = contextvars.ContextVar("jingtan_events_tx", default=None)


def begin(bus: EventBus) -> contextvars.Token:
    """Start collecting the events of one write-transaction attempt (``Database.write`` calls this)."""
    return _CURRENT.set(_Transaction(bus))


def end(token: contextvars.Token) -> list[Event]:
    """Stop collecting; returns the attempt's events (published by the caller only if it committed)."""
    tx = _CURRENT.get()
    _CURRENT.reset(token)
    return tx.pending if tx is not None else []


def attempt_memo() -> dict[str, Any] | None:
    """A dict that lives as long as the current write-transaction attempt (``Database.write``; a retried
    attempt starts empty), for listeners that read the same rows for every event of one transaction;
    None outside one. Whoever changes those rows in the transaction drops its entry."""
    tx = _CURRENT.get()
    return tx.memo if tx is not None else None


def defer_to_commit(key: str, fn: Callable[[AsyncConnection], Awaitable[None]]) -> bool:
    """Run ``fn(conn)`` once, in the current write-transaction attempt, after its work and before COMMIT
    (``Database.write`` calls :func:`run_before_commit`); a second call with the same ``key`` keeps the
    first ``fn``. For writes that several listeners of one transaction add to — e.g. the daily counters,
    merged into one sorted upsert, which also holds their hot row locks only for the end of the
    transaction. Returns False outside a write transaction (the caller then writes at once)."""
    tx = _CURRENT.get()
    if tx is None:
        return False
    tx.before_commit.setdefault(key, fn)
    return True


async def run_before_commit(conn: AsyncConnection) -> None:
    """Run the deferred writes of the current attempt (each once; one deferred while running runs too)."""
    tx = _CURRENT.get()
    if tx is None:
        return
    while tx.before_commit:
        key = next(iter(tx.before_commit))
        fn = tx.before_commit[key]
        await fn(conn)
        del tx.before_commit[key]


async def emit(conn: AsyncConnection, event_type: str, **data: Any) -> Event:
    """Tell the listeners now (same transaction) and the publishers after commit.

    The app's services always write through ``Database.write``, which provides the receivers. Outside it
    (a migration's data step, a test writing through a raw ``engine.begin()``) there is no app and so no
    receiver: the event is dropped, logged at debug level."""
    tx = _CURRENT.get()
    event = Event(event_type, MappingProxyType(dict(data)))
    if tx is None:
        log.debug("event outside Database.write has no receivers", extra={"event_type": event_type})
        return event
    for listener in tx.bus.listeners(event_type):
        await listener(conn, event)
    tx.pending.append(event)
    return event
