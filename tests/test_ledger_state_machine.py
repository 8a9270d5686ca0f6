"""A hypothesis state machine over the ledger's admin operations, on SQLite and PostgreSQL.

Rules: grant, revoke (which expires first), let time pass, run the expiry job, replay an idempotency key
(same input -> first result, no effect), reuse a key with other input (typed error, no effect), send
a bad amount (typed error, no effect). A plain-Python model keeps each member's lots; after every step
the invariants of docs/ledger.md hold and the database equals the model.
"""

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from jingtan_api.users import service as users_service
from jingtan_api.accounts import service as ledger
from jingtan_api.accounts.idempotency import T as IDEM
from jingtan_api.accounts.jobs import expire_points
from jingtan_api.audit.service import T as AUDIT
from jingtan_api.services import Services
from jingtan_api.errors import IdempotencyConflict, InsufficientPoints, ValidationFailed
from jingtan_api.testing import FrozenClock, make_settings

LOT_DAYS = 30
MEMBERS = 3
MAX_AMOUNT = 1000


@dataclass
class Lot:
    seq: int
    expires_at: datetime
    remaining: int


@dataclass
class Model:
    lots: dict[int, list[Lot]] = field(default_factory=dict)  # member index -> lots in creation order
    expired_total: int = 0
    issuance_delta: int = 0
    keys: dict[str, tuple] = field(default_factory=dict)  # key -> (direction, member, amount, reason, tx id)

    def balance(self, m: int) -> int:
        return sum(lot.remaining for lot in self.lots[m])

    def expire(self, m: int, now: datetime) -> int:
        moved = 0
        for lot in self.lots[m]:
            if lot.expires_at <= now and lot.remaining:
                moved += lot.remaining
                lot.remaining = 0
        self.expired_total += moved
        return moved

    def spend(self, m: int, amount: int) -> None:
        for lot in sorted(self.lots[m], key=lambda lot: (lot.expires_at, lot.seq)):
            take = min(amount, lot.remaining)
            lot.remaining -= take
            amount -= take
        assert amount == 0


class LedgerMachine(RuleBasedStateMachine):
    url = ""  # set by the test
    next_start = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    example_ids = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        # One database per test (creating one per example costs more than the example): each example
        # starts after every lot of the previous examples has expired, flushes them, and measures
        # counts from its own baseline.
        self.clock = FrozenClock(LedgerMachine.next_start)
        self.tag = next(LedgerMachine.example_ids)
        self.services = Services.build(
            make_settings(self.url, points={"lot_expiry_days": LOT_DAYS, "max_single_amount": MAX_AMOUNT}),
            clock=self.clock,
        )
        self.db = self.services.db
        self.model = Model()
        self.seq = itertools.count()
        self.key_seq = itertools.count()
        self.members = [self.run(self._register(i)) for i in range(MEMBERS)]
        self.model.lots = {i: [] for i in range(MEMBERS)}
        self.admin = self.run(
            users_service.create_admin(
                self.services,
                email=f"sm-admin-{self.tag}@example.cn", phone=None, password="Carbon-keeper-2026", display_name="SM", now=self.clock()
            )
        )
        self.run(expire_points(self.db, now=self.clock(), lot_expiry_days=LOT_DAYS))
        self.counts_start = self.run(self._counts())
        self.issuance_start = self.run(self._balance_of_code(ledger.ISSUANCE_CODE))
        self.expired_start = self.run(self._balance_of_code(ledger.EXPIRED_CODE))

    # --- plumbing -----------------------------------------------------------------------------------

    def run(self, coro):
        return self.runner.run(coro)

    async def _register(self, i: int) -> int:
        return await users_service.register(
            self.services,
            email=f"sm{self.tag}-{i}@example.cn", phone=None, password="Green-leaf-2026", display_name=f"SM {i}", now=self.clock()
        )

    async def _balance_of_code(self, code: str) -> int:
        async with self.db.read() as conn:
            return (await conn.execute(select(ledger.A.c.balance).where(ledger.A.c.code == code))).scalar_one()

    async def _counts(self) -> tuple[int, int, int]:
        """Admin transactions, idempotency records, audit rows."""
        async with self.db.read() as conn:
            admin_tx = select(func.count()).select_from(ledger.TX).where(ledger.TX.c.kind.in_([ledger.GRANT, ledger.REVOKE]))
            return (
                (await conn.execute(admin_tx)).scalar_one(),
                (await conn.execute(select(func.count()).select_from(IDEM))).scalar_one(),
                (await conn.execute(select(func.count()).select_from(AUDIT))).scalar_one(),
            )

    def adjust(self, direction: str, m: int, amount, key: str, reason: str = "state machine"):
        return self.run(
            self.db.write(
                lambda conn: ledger.adjust_points(
                    conn,
                    direction=direction,
                    actor_user_id=self.admin,
                    user_id=self.members[m],
                    amount=amount,
                    reason=reason,
                    idempotency_key=key,
                    max_amount=MAX_AMOUNT,
                    lot_expiry_days=LOT_DAYS,
                    now=self.clock(),
                )
            )
        )

    def new_key(self) -> str:
        return f"sm-{next(self.key_seq)}"

    def teardown(self) -> None:
        LedgerMachine.next_start = self.clock() + timedelta(days=LOT_DAYS + 1)
        try:
            self.run(self.db.dispose())
        finally:
            self.runner.close()

    # --- rules --------------------------------------------------------------------------------------

    @rule(m=st.integers(0, MEMBERS - 1), amount=st.integers(1, MAX_AMOUNT))
    def grant(self, m, amount):
        key = self.new_key()
        tx_id, replayed = self.adjust(ledger.GRANT, m, amount, key)
        assert not replayed
        self.model.lots[m].append(Lot(next(self.seq), self.clock() + timedelta(days=LOT_DAYS), amount))
        self.model.issuance_delta -= amount
        self.model.keys[key] = (ledger.GRANT, m, amount, "state machine", tx_id)

    @rule(m=st.integers(0, MEMBERS - 1), amount=st.integers(1, MAX_AMOUNT))
    def revoke(self, m, amount):
        key = self.new_key()
        # What is spendable once expired lots are gone (the revoke expires them first).
        spendable = sum(lot.remaining for lot in self.model.lots[m] if lot.expires_at > self.clock())
        if amount > spendable:
            try:
                self.adjust(ledger.REVOKE, m, amount, key)
            except InsufficientPoints:
                return  # nothing written: not even the expiry attempted first
            raise AssertionError(f"revoke of {amount} with {spendable} spendable succeeded")
        tx_id, replayed = self.adjust(ledger.REVOKE, m, amount, key)
        assert not replayed
        self.model.expire(m, self.clock())
        self.model.spend(m, amount)
        self.model.issuance_delta += amount
        self.model.keys[key] = (ledger.REVOKE, m, amount, "state machine", tx_id)

    @rule(m=st.integers(0, MEMBERS - 1))
    def revoke_everything_spendable(self, m):
        spendable = sum(lot.remaining for lot in self.model.lots[m] if lot.expires_at > self.clock())
        if spendable:
            self.revoke(m, min(spendable, MAX_AMOUNT))

    @rule(days=st.integers(1, 40), hours=st.integers(0, 23))
    def time_passes(self, days, hours):
        self.clock.advance(days=days, hours=hours)

    @rule()
    def expiry_job(self):
        accounts, points = self.run(expire_points(self.db, now=self.clock(), lot_expiry_days=LOT_DAYS))
        moved = [self.model.expire(m, self.clock()) for m in range(MEMBERS)]
        assert points == sum(moved)
        assert accounts == sum(1 for x in moved if x)

    @precondition(lambda self: self.model.keys)
    @rule(data=st.data())
    def replay_key(self, data):
        key = data.draw(st.sampled_from(sorted(self.model.keys)))
        direction, m, amount, reason, tx_id = self.model.keys[key]
        assert self.adjust(direction, m, amount, key, reason) == (tx_id, True)

    @precondition(lambda self: self.model.keys)
    @rule(data=st.data(), change=st.sampled_from(["amount", "member", "direction", "reason"]))
    def reuse_key_with_other_input(self, data, change):
        key = data.draw(st.sampled_from(sorted(self.model.keys)))
        direction, m, amount, reason, _ = self.model.keys[key]
        if change == "amount":
            amount = amount % MAX_AMOUNT + 1
        elif change == "member":
            m = (m + 1) % MEMBERS
        elif change == "direction":
            direction = ledger.REVOKE if direction == ledger.GRANT else ledger.GRANT
        else:
            reason += " (edited)"
        try:
            self.adjust(direction, m, amount, key, reason)
        except IdempotencyConflict:
            return
        raise AssertionError("reused key with other input was accepted")

    @rule(
        m=st.integers(0, MEMBERS - 1),
        direction=st.sampled_from([ledger.GRANT, ledger.REVOKE]),
        amount=st.sampled_from([0, -1, -MAX_AMOUNT, MAX_AMOUNT + 1, 2**31, 2**63, 1.5, "5", True, None]),
    )
    def bad_amount(self, m, direction, amount):
        try:
            self.adjust(direction, m, amount, self.new_key())
        except ValidationFailed as exc:
            assert exc.field == "amount"
            return
        raise AssertionError(f"amount {amount!r} was accepted")

    # --- invariants ---------------------------------------------------------------------------------

    @invariant()
    def ledger_invariants_hold(self):
        async def check():
            async with self.db.read() as conn:
                return await ledger.check_invariants(conn)

        assert self.run(check()) == []

    @invariant()
    def database_equals_model(self):
        async def read():
            async with self.db.read() as conn:
                balances, lots = [], []
                for pk in self.members:
                    account_id = await ledger.member_account_id(conn, pk)
                    balances.append(
                        (await conn.execute(select(ledger.A.c.balance).where(ledger.A.c.id == account_id))).scalar_one()
                    )
                    rows = await conn.execute(
                        select(ledger.L.c.remaining, ledger.L.c.expires_at)
                        .where(ledger.L.c.account_id == account_id)
                        .order_by(ledger.L.c.id)
                    )
                    lots.append([(r.remaining, r.expires_at) for r in rows])
            return balances, lots

        balances, lots = self.run(read())
        admin_tx, idem, audit = (now - start for now, start in zip(self.run(self._counts()), self.counts_start, strict=True))
        assert balances == [self.model.balance(m) for m in range(MEMBERS)]
        assert all(b >= 0 for b in balances)
        assert lots == [[(lot.remaining, lot.expires_at) for lot in self.model.lots[m]] for m in range(MEMBERS)]
        # One effect per idempotency key: one transaction, one key record and one audit row each.
        assert admin_tx == idem == audit == len(self.model.keys)
        assert self.run(self._balance_of_code(ledger.ISSUANCE_CODE)) == self.issuance_start + self.model.issuance_delta
        assert self.run(self._balance_of_code(ledger.EXPIRED_CODE)) == self.expired_start + self.model.expired_total


def test_ledger_state_machine(db_url):
    LedgerMachine.url = db_url
    run_state_machine_as_test(
        LedgerMachine,
        settings=hsettings(max_examples=25, stateful_step_count=15, deadline=None),
    )
