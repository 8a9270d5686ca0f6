"""docs/methodology.md shows the factors the plugins ship.

The factors are loaded the way the server loads them: ``load_plugins`` with default settings (no
jingtan.toml, no JINGTAN_* variables), so the built-ins come through their entry points and their
``methodology(settings)``; the example plugin ``examples/byo_cup`` is loaded from its source file through
the same call. Every factor must appear in a table of its plugin's section of the document, with the same
value and unit, and the document must not list factors that no plugin ships.
"""

import importlib.util
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest

from jingtan_api.plugins.api import Factor
from jingtan_api.plugins.manager import LoadedActionType, load_plugins
from jingtan_api.testing import make_settings

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "methodology.md"
BYO_CUP = ROOT / "examples" / "byo_cup" / "jingtan_byo_cup" / "__init__.py"

# Section of docs/methodology.md ("## <title>") that documents each action type; others cite these names.
SECTIONS = {
    "transit": "Transit",
    "recycling": "Recycling",
    "energy_saving": "Energy saving",
    "byo_cup": "Bring your own cup",
}
BUILT_INS = {"transit", "recycling", "energy_saving"}


def _byo_cup_module():
    # From the source file under a private name: the same code whether or not the example is installed,
    # and nothing left in sys.modules for tests/test_third_party_plugin.py to trip over.
    spec = importlib.util.spec_from_file_location("_methodology_doc_byo_cup", BYO_CUP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shipped() -> dict[str, LoadedActionType]:
    settings = make_settings("sqlite+aiosqlite://")
    host = load_plugins(settings)
    assert set(host.action_types) == BUILT_INS, "the default configuration enables the three built-ins"
    example = load_plugins(settings, plugins=[("byo_cup", _byo_cup_module())])
    return {**host.action_types, **example.action_types}


SHIPPED = _shipped()


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _tables() -> list[tuple[str, dict[str, str]]]:
    """(section title, {column header: cell}) for every row of every table, by "## " section."""
    rows: list[tuple[str, dict[str, str]]] = []
    section = ""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    header: list[str] | None = None
    in_code = False
    for i, line in enumerate(lines):
        if line.startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        if line.startswith("## "):
            section = line[3:].strip()
        if not line.startswith("|"):
            header = None
            continue
        cells = _cells(line)
        if all(re.fullmatch(r":?-+:?", c) for c in cells):
            header = [h.lower() for h in _cells(lines[i - 1])]
            continue
        if header is not None:
            assert len(cells) == len(header), f"docs/methodology.md line {i + 1}: {len(cells)} cells, header has {len(header)}"
            rows.append((section, dict(zip(header, cells, strict=True))))
    return rows


def _factor_rows() -> dict[str, tuple[str, dict[str, str]]]:
    found: dict[str, tuple[str, dict[str, str]]] = {}
    for section, row in _tables():
        if "factor id" not in row:
            continue
        factor_id = row["factor id"].strip("`")
        assert factor_id not in found, f"factor {factor_id} is listed twice in docs/methodology.md"
        found[factor_id] = (section, row)
    return found


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None


def test_the_cited_sections_exist():
    headings = {line[3:].strip() for line in DOC.read_text(encoding="utf-8").splitlines() if line.startswith("## ")}
    for title in SECTIONS.values():
        assert title in headings, f'docs/methodology.md has no section "## {title}"'


@pytest.mark.parametrize("code", sorted(SHIPPED))
def test_every_shipped_factor_is_documented_with_its_value_and_unit(code):
    assert code in SECTIONS, f"action type {code!r} has no section in docs/methodology.md (add it to SECTIONS)"
    rows = _factor_rows()
    factors: tuple[Factor, ...] = SHIPPED[code].methodology.factors
    assert factors, f"{code} ships no factors"
    problems = []
    for f in factors:
        if f.id not in rows:
            problems.append(f"{f.id}: missing (ships {f.value} {f.unit})")
            continue
        section, row = rows[f.id]
        if section != SECTIONS[code]:
            problems.append(f'{f.id}: listed under "{section}", not "{SECTIONS[code]}"')
        documented = _decimal(row["value"])
        if documented != f.value:
            problems.append(f"{f.id}: the document says {row['value']!r}, the plugin ships {f.value}")
        if row["unit"].strip("`") != f.unit:
            problems.append(f"{f.id}: the document says unit {row['unit']!r}, the plugin ships {f.unit!r}")
    assert not problems, "docs/methodology.md differs from the factors the plugins ship:\n" + "\n".join(problems)


def test_the_document_lists_no_factor_that_is_not_shipped():
    shipped = {f.id for loaded in SHIPPED.values() for f in loaded.methodology.factors}
    stale = sorted(set(_factor_rows()) - shipped)
    assert not stale, f"docs/methodology.md lists factors no plugin ships: {stale}"


def test_the_rules_versions_are_the_shipped_ones():
    versions = {row["action type code"].strip("`"): row["rules version"]
                for _, row in _tables() if "rules version" in row}
    assert versions == {code: loaded.action_type.version for code, loaded in SHIPPED.items()}
