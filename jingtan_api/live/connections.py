"""How many WebSocket connections this process holds, in all and per member (``[live]`` limits).

No GraphQL here: the transport (``jingtan_api.live.transport``) asks :meth:`acquire` when a client has
authenticated and calls :meth:`release` when the connection ends."""

from collections import Counter

# Close codes of the live transport beside graphql-transport-ws's own (4400, 4401, 4403, 4408, 4409,
# 4429); docs/live.md lists them all.
SLOW_CONSUMER = 4008
TOO_MANY_CONNECTIONS = 4029
HEARTBEAT_TIMEOUT = 4030


class ConnectionLimits:
    def __init__(self, *, per_process: int, per_member: int) -> None:
        self.per_process = per_process
        self.per_member = per_member
        self.total = 0
        self.by_member: Counter[int] = Counter()

    def acquire(self, user_id: int) -> str | None:
        """Count one more connection of ``user_id``; the refusal's reason when a limit is reached."""
        if self.total >= self.per_process:
            return "TOO_MANY_CONNECTIONS: this server holds its most connections / 服务器连接数已满"
        if self.by_member[user_id] >= self.per_member:
            return f"TOO_MANY_CONNECTIONS: at most {self.per_member} per member / 每位会员最多 {self.per_member} 个连接"
        self.total += 1
        self.by_member[user_id] += 1
        return None

    def release(self, user_id: int) -> None:
        self.total = max(0, self.total - 1)
        self.by_member[user_id] -= 1
        if self.by_member[user_id] <= 0:
            del self.by_member[user_id]
