"""argon2id password hashing and the password policy."""

import asyncio
import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from jingtan_api.errors import ValidationFailed

# A short list of the passwords most often seen in leaks (Chinese and international sites); the policy
# also refuses passwords made of one character class or containing the login identifier.
COMMON_PASSWORDS = frozenset(
    """
    123456 12345678 123456789 1234567890 111111 000000 123123 666666 888888 5201314 1314520 abc123
    password password1 passw0rd qwerty qwerty123 qwertyuiop iloveyou admin admin123 letmein welcome
    a123456 a12345678 aa123456 woaini1314 123qwe 1q2w3e4r 1qaz2wsx zxcvbnm asdfghjkl 11111111 88888888
    abcd1234 abcdefg1 password123 p@ssw0rd jingtan jingtan123
    """.split()
)


class Passwords:
    def __init__(self, *, time_cost: int, memory_cost_kib: int, parallelism: int, min_length: int) -> None:
        self.hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=parallelism
        )
        self.min_length = min_length
        # Verified against when the account does not exist, so unknown users cost the same time.
        self._dummy_hash = self.hasher.hash("jingtan-dummy-password-for-timing")

    def check_policy(self, password: str, *, identifiers: tuple[str | None, ...] = (), field: str = "password") -> None:
        if not isinstance(password, str) or len(password) < self.min_length:
            raise ValidationFailed(
                f"Password must have at least {self.min_length} characters / 密码至少 {self.min_length} 位",
                code="WEAK_PASSWORD",
                field=field,
            )
        if len(password) > 256:
            raise ValidationFailed("Password is too long / 密码过长", code="WEAK_PASSWORD", field=field)
        classes = sum(
            bool(re.search(pattern, password))
            for pattern in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]")
        )
        lowered = password.lower()
        if classes < 2 or lowered in COMMON_PASSWORDS or len(set(password)) < 4:
            raise ValidationFailed(
                "Password is too easy to guess: mix letters, digits or symbols / 密码过于简单，请混合字母、数字或符号",
                code="WEAK_PASSWORD",
                field=field,
            )
        for ident in identifiers:
            if ident:
                core = ident.split("@")[0].lstrip("+").lower()
                # Phones are stored in E.164; people type the national number (13800138000, not 86…).
                cores = {core, core[2:]} if ident.startswith("+86") else {core}
                if any(len(c) >= 4 and c in lowered for c in cores):
                    raise ValidationFailed(
                        "Password must not contain your email or phone / 密码不能包含邮箱或手机号",
                        code="WEAK_PASSWORD",
                        field=field,
                    )

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        def _verify() -> bool:
            try:
                return self.hasher.verify(password_hash or self._dummy_hash, password) and password_hash is not None
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(_verify)

    def needs_rehash(self, password_hash: str) -> bool:
        return self.hasher.check_needs_rehash(password_hash)
