"""Invite codes of households and organisations: short, typeable, unguessable; stored only as a hash.

A code is 12 characters from an alphabet without look-alikes (no 0/O, 1/I/L), shown grouped by four
(``HK7F-9Q2M-XW3T``, ~58 bits). What is stored is the SHA-256 of the normalised code (upper case, no
spaces or dashes), so a database leak does not leak usable invites.
"""

import hashlib
import secrets

from jingtan_api.errors import ValidationFailed

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
LENGTH = 12


def new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, LENGTH, 4))


def normalise(code: object, *, field: str = "code") -> str:
    """The code as stored before hashing; BAD_USER_INPUT when it cannot be one of ours."""
    if not isinstance(code, str):
        raise ValidationFailed("The invite code must be text / 邀请码须为文本", field=field)
    text = "".join(code.split()).replace("-", "").upper()
    if len(text) != LENGTH or any(ch not in ALPHABET for ch in text):
        raise ValidationFailed("This is not a valid invite code / 邀请码格式无效", code="INVALID_INVITE", field=field)
    return text


def code_hash(code: object, *, field: str = "code") -> str:
    return hashlib.sha256(normalise(code, field=field).encode()).hexdigest()
