"""The cursor codec of graphql/relay.py: one encoder/decoder for id keys and compound keys."""

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from jingtan_api.errors import ValidationFailed
from jingtan_api.graphql.relay import ID_KEYSET, MAX_PK, Keyset, decode_cursor, encode_cursor

BY_TIME = Keyset("NEWEST", (datetime,))
BY_PRICE = Keyset("POINTS_ASC", (int,))
BY_NAME = Keyset("NAME", (str,))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def refused(cursor: str, keyset: Keyset = ID_KEYSET, field: str = "after") -> None:
    with pytest.raises(ValidationFailed) as caught:
        decode_cursor(cursor, field=field, keyset=keyset)
    assert caught.value.extensions == {"code": "INVALID_CURSOR", "field": field}


def test_id_keys_are_the_cursors_clients_hold():
    assert encode_cursor(42) == encode_cursor((42,)) == b64("c:42")
    assert decode_cursor(b64("c:42"), field="after") == (42,)
    assert decode_cursor(b64(f"c:{MAX_PK}"), field="after") == (MAX_PK,)
    assert decode_cursor(None, field="after") is None


def test_compound_keys_round_trip_in_the_catalogue_format():
    moment = datetime(2026, 6, 1, 8, 30, 0, 123456, tzinfo=UTC)
    cursor = encode_cursor((moment, 7), BY_TIME)
    assert base64.b64decode(cursor).decode() == '["NEWEST","2026-06-01T08:30:00.123456+00:00",7]'
    assert decode_cursor(cursor, field="after", keyset=BY_TIME) == (moment, 7)
    assert decode_cursor(encode_cursor((-5, 0), BY_PRICE), field="before", keyset=BY_PRICE) == (-5, 0)
    assert decode_cursor(encode_cursor(("绿叶", 3), BY_NAME), field="after", keyset=BY_NAME) == ("绿叶", 3)
    # Another offset is the same moment, read back in UTC.
    east = b64(json.dumps(["NEWEST", "2026-06-01T16:30:00+08:00", 7]))
    assert decode_cursor(east, field="after", keyset=BY_TIME) == (datetime(2026, 6, 1, 8, 30, tzinfo=UTC), 7)


@pytest.mark.parametrize(
    "items",
    [
        ["POINTS_ASC", 10, 1],  # another order
        ["NEWEST", "2026-06-01T00:00:00", 1],  # naive
        ["NEWEST", "0001-01-01T00:00:00+05:00", 1],  # before year 1 in UTC
        ["NEWEST", "yesterday", 1],
        ["NEWEST", 1780000000, 1],
        ["NEWEST", "2026-06-01T00:00:00+00:00", MAX_PK + 1],
        ["NEWEST", "2026-06-01T00:00:00+00:00", -1],
        ["NEWEST", "2026-06-01T00:00:00+00:00", True],
        ["NEWEST", "2026-06-01T00:00:00+00:00", 1.0],
        ["NEWEST", "2026-06-01T00:00:00+00:00", "1"],
        ["NEWEST", "2026-06-01T00:00:00+00:00"],
        ["NEWEST", "2026-06-01T00:00:00+00:00", 1, 2],
        ["NEWEST"],
        [],
    ],
)
def test_compound_cursors_are_validated(items):
    refused(b64(json.dumps(items)), BY_TIME)


@pytest.mark.parametrize(
    "value", [MAX_PK + 1, -MAX_PK - 1, True, 1.5, None, "10", [10]],
)
def test_integer_sort_values_are_bounded(value):
    refused(b64(json.dumps(["POINTS_ASC", value, 1])), BY_PRICE)


@pytest.mark.parametrize("value", ["", "a\x00b", "x" * 201, 5])
def test_text_sort_values_are_bounded(value):
    refused(b64(json.dumps(["NAME", value, 1])), BY_NAME)


def test_cursors_of_another_shape_are_refused():
    refused(encode_cursor(5), BY_TIME)  # an id cursor where a compound one belongs
    refused(encode_cursor((datetime.now(UTC), 5), BY_TIME))  # and the other way round
    refused(b64('{"NEWEST": 1}'), BY_TIME)
    refused(b64("[1, 2"), BY_TIME)
    refused(b64("[" * 300), BY_TIME)
    refused("x" * 513)
    refused("ü")
    refused(b64("c:12").rstrip("="))  # padding is required
    for raw in ("c:", "c:01", "c:+1", "c:1 ", "c:²", "c:١", "C:1", "c:1.0", "User:1"):
        refused(b64(raw))
    refused(b64("c:x"), field="before")


def test_encoding_checks_the_key_shape():
    with pytest.raises(ValueError):
        encode_cursor((1, 2))
    with pytest.raises(ValueError):
        encode_cursor((1,), BY_TIME)
    with pytest.raises(ValueError):
        Keyset(None, (int,))
    with pytest.raises(ValueError):
        Keyset("X", (float,))
    assert decode_cursor(encode_cursor((datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=8))), 1), BY_TIME), field="after", keyset=BY_TIME)[1] == 1
