"""Every error code the package can raise is in the catalogue (jingtan_api.errors.ERROR_CODES, with its
description), and every mutation payload carries typed errors whose enum values come from it."""

import re
from pathlib import Path

from jingtan_api.app import create_app
from jingtan_api.errors import COMMON_CODES, ERROR_CODES
from jingtan_api.testing import make_settings

PACKAGE = Path(__file__).resolve().parent.parent / "jingtan_api"
LITERAL = re.compile(r"""\bcode\s*=\s*["']([A-Z][A-Z_]+)["']""")


def test_every_raised_code_is_in_the_catalogue():
    found = {}
    for path in PACKAGE.rglob("*.py"):
        for code in LITERAL.findall(path.read_text(encoding="utf-8")):
            found.setdefault(code, path.relative_to(PACKAGE).as_posix())
    assert "INSUFFICIENT_POINTS" in found and "OUT_OF_STOCK" in found  # the scan sees the codes
    missing = {c: p for c, p in found.items() if c not in ERROR_CODES}
    assert not missing, f"add these codes with a description to ERROR_CODES: {missing}"
    assert set(COMMON_CODES) <= set(ERROR_CODES)


def test_every_mutation_payload_has_user_errors_and_typed_errors(tmp_path):
    schema = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")).state.schema._schema
    for name, field in schema.mutation_type.fields.items():
        payload = field.type.of_type if hasattr(field.type, "of_type") else field.type
        assert {"userErrors", "errors"} <= set(payload.fields), f"{name} payload {payload.name}"
        error = payload.fields["errors"].type.of_type.of_type.of_type
        codes = error.fields["code"].type.of_type
        assert codes.name.endswith("ErrorCode") and set(codes.values) <= set(ERROR_CODES), name
        assert set(COMMON_CODES) <= set(codes.values), name
