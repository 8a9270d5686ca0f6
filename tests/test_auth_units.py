"""Pure unit tests: phone/email normalisation, the password policy, argon2id hashing, global IDs."""

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jingtan_api.auth.passwords import Passwords
from jingtan_api.errors import NotFound, ValidationFailed
from jingtan_api.graphql.relay import MAX_PK, decode_id, from_global_id, parse_pk, to_global_id
from jingtan_api.users.service import normalize_email, normalize_identifier, normalize_phone

E164 = r"^\+[1-9][0-9]{6,14}$"


# --- phones ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("13800138000", "+8613800138000"),
        ("+8613800138000", "+8613800138000"),
        ("+86 138 0013 8000", "+8613800138000"),
        ("+86-138-0013-8000", "+8613800138000"),
        ("(+86) 13800138000", "+8613800138000"),
        ("0086 138 0013 8000", "+8613800138000"),
        (" 199 0000 0000 ", "+8619900000000"),
        ("１３８００１３８０００", "+8613800138000"),  # full-width digits
        ("＋８６ １３８－００１３－８０００", "+8613800138000"),  # full-width plus, hyphen and space
        ("+1 (415) 555-2671", "+14155552671"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+85291234567", "+85291234567"),  # Hong Kong
    ],
)
def test_phone_normalisation(raw, expected):
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "", " ", "phone", "12345", "1380013800", "138001380001", "12800138000", "10086",
        "+86 128 0013 8000", "+8613800138", "+86138001380001", "8613800138000", "+0123456789",
        "+1234567890123456", "13800138000x", "13٨00138000", "١٣٨٠٠١٣٨٠٠٠", "+86 ١٣٨٠٠١٣٨٠٠٠",
        "138.0013.8000", "138/0013/8000", "+", "++8613800138000", "13800138000\n1",
    ],
)
def test_malformed_phones(raw):
    with pytest.raises(ValidationFailed) as info:
        normalize_phone(raw)
    assert info.value.code == "INVALID_PHONE" and info.value.field == "phone"


mainland = st.builds(
    lambda second, rest: f"1{second}{rest}",
    st.sampled_from("3456789"),
    st.text(alphabet="0123456789", min_size=9, max_size=9),
)


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in text)


@settings(max_examples=200, deadline=None)
@given(
    number=mainland,
    prefix=st.sampled_from(["", "+86", "+86 ", "0086", "0086-", "(+86)"]),
    groups=st.sampled_from([(11,), (3, 4, 4), (3, 8), (1, 10)]),
    sep=st.sampled_from(["", " ", "-"]),
    wide=st.booleans(),
)
def test_any_spelling_of_a_mainland_number_normalises_to_one_value(number, prefix, groups, sep, wide):
    parts, start = [], 0
    for size in groups:
        parts.append(number[start : start + size])
        start += size
    written = prefix + sep.join(parts)
    if wide:
        written = _fullwidth(written)
    assert normalize_phone(written) == "+86" + number


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_phone_normalisation_gives_ascii_e164_or_invalid_phone(text):
    import re

    try:
        result = normalize_phone(text)
    except ValidationFailed as exc:
        assert exc.code == "INVALID_PHONE"
        return
    assert re.match(E164, result) and result.isascii()
    assert normalize_phone(result) == result  # idempotent


# --- emails ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("member@example.cn", "member@example.cn"),
        ("Member@Example.CN", "member@example.cn"),
        ("  li.lei+points@Example.com.cn ", "li.lei+points@example.com.cn"),
        ("用户@例子.中国", "用户@例子.中国"),
    ],
)
def test_email_normalisation(raw, expected):
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["", "plainaddress", "@example.cn", "a@", "a@@example.cn", "a b@example.cn", "a@example", "a@-example.cn",
     "a@example..cn", "x" * 60 + "@" + ".".join(["e" * 60] * 4) + ".cn", "a@" + "b" * 250 + ".cn", ".a@example.cn", "a@exa mple.cn"],
)
def test_malformed_emails(raw):
    with pytest.raises(ValidationFailed) as info:
        normalize_email(raw)
    assert info.value.code == "INVALID_EMAIL" and info.value.field == "email"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_email_normalisation_is_lowercase_idempotent_or_invalid(text):
    try:
        result = normalize_email(text)
    except ValidationFailed as exc:
        assert exc.code == "INVALID_EMAIL"
        return
    assert result == result.lower() and normalize_email(result) == result and len(result) <= 254


def test_identifier_is_an_email_with_at_sign_else_a_phone():
    assert normalize_identifier(" A@B.cn ") == "a@b.cn"
    assert normalize_identifier("138 0013 8000") == "+8613800138000"
    with pytest.raises(ValidationFailed) as info:
        normalize_identifier("nobody")
    assert info.value.field == "identifier"


# --- password policy and hashing -------------------------------------------------------------------


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords(time_cost=1, memory_cost_kib=64, parallelism=1, min_length=8)


@pytest.mark.parametrize(
    "password",
    ["Green-leaf-2026", "correct horse battery staple 9", "绿色出行Green2026", "Aa1!Bb2@", "低碳生活每一天9x"],
)
def test_policy_accepts(passwords, password):
    passwords.check_policy(password, identifiers=("member@example.cn", "+8613800138000"))


@pytest.mark.parametrize(
    "password, why",
    [
        ("", "short"),
        ("Ab1!", "short"),
        ("Abcdef1", "short"),  # 7 < 8
        ("a" * 257 + "B1", "long"),
        ("abcdefghijk", "one class"),
        ("ABCDEFGHIJK", "one class"),
        ("1357924680", "one class"),
        ("!@#$%^&*()", "one class"),
        ("PASSWORD123", "common"),
        ("Password1", "common"),
        ("qwerty123", "common"),
        ("Jingtan123", "common"),
        ("ab1ab1ab1ab1", "few distinct"),
        ("aaaaaaaaaaaaA", "few distinct"),
        ("Member-2026!", "contains the email local part"),
        ("x13800138000Y", "contains the national phone number"),
        ("x8613800138000Y", "contains the E.164 phone number"),
    ],
)
def test_policy_refuses(passwords, password, why):
    with pytest.raises(ValidationFailed) as info:
        passwords.check_policy(password, identifiers=("member@example.cn", "+8613800138000"), field="newPassword")
    assert info.value.code == "WEAK_PASSWORD" and info.value.field == "newPassword", why


def test_policy_ignores_short_identifier_parts(passwords):
    # A 3-letter local part would forbid too many passwords; it is not checked.
    passwords.check_policy("Bob-the-builder-9", identifiers=("bob@example.cn",))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_policy_only_ever_raises_weak_password(text):
    p = Passwords(time_cost=1, memory_cost_kib=64, parallelism=1, min_length=8)
    try:
        p.check_policy(text, identifiers=("member@example.cn", "+8613800138000"))
    except ValidationFailed as exc:
        assert exc.code == "WEAK_PASSWORD"
        return
    assert 8 <= len(text) <= 256


def test_argon2id_hash_and_verify(passwords):
    async def go():
        hashed = await passwords.hash("Green-leaf-2026")
        assert hashed.startswith("$argon2id$")
        assert await passwords.hash("Green-leaf-2026") != hashed  # salted
        assert await passwords.verify(hashed, "Green-leaf-2026")
        assert not await passwords.verify(hashed, "green-leaf-2026")
        assert not await passwords.verify(None, "jingtan-dummy-password-for-timing")  # unknown user
        assert not await passwords.verify("not-a-hash", "Green-leaf-2026")
        assert not passwords.needs_rehash(hashed)
        stronger = Passwords(time_cost=2, memory_cost_kib=128, parallelism=1, min_length=8)
        assert stronger.needs_rehash(hashed)

    asyncio.run(go())


# --- global IDs --------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_decoding_any_text_as_an_id_raises_only_not_found(text):
    try:
        pk = decode_id(text, "User")
    except NotFound:
        return
    assert 0 <= pk <= MAX_PK and to_global_id("User", pk) == text


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=MAX_PK))
def test_ids_round_trip(pk):
    assert decode_id(to_global_id("User", pk), "User") == pk
    with pytest.raises(NotFound):
        decode_id(to_global_id("Account", pk), "User")


@pytest.mark.parametrize("raw", ["", "-1", "+1", "01", "1.0", "²", "١", "1 ", str(MAX_PK + 1), "9" * 5000])
def test_parse_pk_refuses(raw):
    assert parse_pk(raw) is None


def test_non_canonical_base64_is_not_an_id():
    assert from_global_id("VXNlcjox") == ("User", "1")
    for alias in ("VXNlcjox=", "VXNlcjox==", " VXNlcjox"):
        with pytest.raises(NotFound):
            from_global_id(alias)


@pytest.mark.parametrize(
    "address, bucket",
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::ffff", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("local", "local"),
        ("", "unknown"),
    ],
)
def test_login_limits_count_ipv6_per_64(address, bucket):
    from jingtan_api.users.service import address_bucket

    assert address_bucket(address) == bucket
