"""docs/science.md agrees with the code: every config switch its compatibility table names is a
key of the schema, and no module cites a science document other than docs/science.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sftrl.config import load_schema

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "science.md"
OLD_NAME = "SCIENCE.md"  # a name modules used to cite; no such file is in the repository
COLUMNS = ["item", "published behaviour", "ours", "config switch", "why"]


def compatibility_rows() -> list[dict[str, str]]:
    """The rows of the "Reference compatibility" table, as dicts keyed by COLUMNS."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Reference compatibility", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip() for line in section.splitlines() if line.strip().startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == COLUMNS
    rows = []
    for line in lines[2:]:  # after the header and the |---| line
        # a "|" inside a code span would split a cell: the table must not use one
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert len(cells) == len(COLUMNS), line
        rows.append(dict(zip(COLUMNS, cells, strict=True)))
    return rows


def switches(cell: str) -> list[str]:
    """Config paths written as code spans in a switch cell, e.g. `rl.ppo.min_lr`."""
    return re.findall(r"`([^`]+)`", cell)


def schema_node(schema: dict, path: str) -> dict:
    """The schema of config path `path` (`a.b`, `a.b[].c` for every entry of the list a.b)."""
    node = schema
    for part in path.split("."):
        is_list = part.endswith("[]")
        name = part.removesuffix("[]")
        properties = node.get("properties", {})
        if name not in properties:
            raise KeyError(f"{path}: no key {name!r} (has {sorted(properties)})")
        node = properties[name]
        if is_list:
            if "items" not in node:
                raise KeyError(f"{path}: {name!r} is not a list")
            node = node["items"]
    return node


def test_compatibility_table_has_rows_and_switches():
    rows = compatibility_rows()
    assert len(rows) >= 20
    named = [s for row in rows for s in switches(row["config switch"])]
    assert "reward.mode" in named and "rl.ppo.adam_eps" in named
    for row in rows:
        assert row["item"] and row["why"], row
        cell = row["config switch"]
        assert switches(cell) or "`" not in cell, cell


@pytest.mark.parametrize(
    "path",
    sorted({s for row in compatibility_rows() for s in switches(row["config switch"])}),
)
def test_every_named_switch_is_a_schema_key(path):
    node = schema_node(load_schema(), path)
    assert "description" in node or "enum" in node or "type" in node, path


def test_schema_node_rejects_unknown_paths():
    schema = load_schema()
    with pytest.raises(KeyError, match="no key"):
        schema_node(schema, "reward.style")
    with pytest.raises(KeyError, match="not a list"):
        schema_node(schema, "reward[].mode")


def test_modules_cite_the_science_doc_in_the_repository():
    assert DOC.is_file()
    for path in sorted((ROOT / "src").rglob("*.py")) + sorted((ROOT / "tests").glob("*.py")):
        if path == Path(__file__).resolve():
            continue
        text = path.read_text(encoding="utf-8")
        assert OLD_NAME not in text, f"{path} cites {OLD_NAME}: the doc is docs/science.md"
