"""Writing figures: draw one by name, write the PDF atomically with its JSON sidecar; the CLI.

``build_figure(name, tables_dir, out_pdf, settings)`` reads ``<tables_dir>/<table>.parquet``,
draws, writes the PDF atomically (temp file, then rename) and a JSON sidecar next to it
(``out_pdf.with_suffix(".json")``) with the figure name, the tables read (with their sha256),
the artifact ids drawn from and the settings. Command line::

    python -m sftrl.figures recovery --tables results/tables --out results/figures/recovery.pdf
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from sftrl.figures import FIGURES, figure_module
from sftrl.figures.style import TABLE_COLUMNS, FigureInfo


def _atomic_write(path: Path, write: Callable) -> None:
    """Write through ``write(fh)`` into a temp file beside ``path``, then rename onto it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_pdf(fig: Figure, out_pdf: Path) -> None:
    """Vector PDF, no creation date (same tables -> same bytes), written atomically."""
    metadata = {"CreationDate": None, "Creator": "sftrl.figures"}
    _atomic_write(Path(out_pdf), lambda fh: fig.savefig(fh, format="pdf", metadata=metadata))


def draw(name: str, tables: dict, settings: dict | None = None) -> tuple[Figure, FigureInfo]:
    """Figure ``name`` drawn from ``tables`` (``{table name: DataFrame}``)."""
    return figure_module(name).draw(tables, dict(settings or {}))


def plot(name: str, tables: dict, out_pdf: Path, settings: dict | None = None) -> dict:
    """Draw figure ``name`` and write it to ``out_pdf``; what it drew (see FigureInfo)."""
    fig, info = draw(name, tables, settings)
    save_pdf(fig, out_pdf)
    return info.as_dict()


def figure_tables(name: str) -> tuple[str, ...]:
    """The tables figure ``name`` reads."""
    return tuple(figure_module(name).TABLES)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_tables(tables_dir: Path, names: Iterable[str] = tuple(TABLE_COLUMNS)) -> dict:
    """``{name: DataFrame}`` from ``<tables_dir>/<name>.parquet``; a missing file is empty."""
    tables = {}
    for name in names:
        path = Path(tables_dir) / f"{name}.parquet"
        tables[name] = pd.read_parquet(path) if path.exists() else pd.DataFrame()
    return tables


def _figure_settings(name: str, settings: dict | None) -> dict:
    """The settings for one figure: top-level keys, overridden by a sub-dict under its name
    (so the whole ``figures:`` config block can be passed as is)."""
    settings = dict(settings or {})
    own = settings.get(name)
    if isinstance(own, dict):
        settings = {k: v for k, v in settings.items() if k not in FIGURES} | own
    return settings


def build_figure(name: str, tables_dir: Path, out_pdf: Path, settings: dict | None = None) -> None:
    """Read the tables ``name`` needs, draw, write ``out_pdf`` and its ``.json`` sidecar."""
    if name not in FIGURES:
        raise KeyError(f"unknown figure {name!r}; known: {sorted(FIGURES)}")
    tables_dir, out_pdf = Path(tables_dir), Path(out_pdf)
    settings = _figure_settings(name, settings)
    names = figure_tables(name)
    drawn = plot(name, read_tables(tables_dir, names), out_pdf, settings)
    inputs = {}
    for table in names:
        path = tables_dir / f"{table}.parquet"
        inputs[table] = {"file": path.name, "sha256": _sha256(path)} if path.exists() else None
    sidecar = {
        "figure": name,
        "pdf": out_pdf.name,
        "tables_dir": str(tables_dir),
        "tables": inputs,
        "artifacts": drawn["artifacts"],
        "panels": drawn["panels"],
        "empty_panels": drawn["empty_panels"],
        "settings": settings,
    }
    text = json.dumps(sidecar, indent=2, sort_keys=True, default=str) + "\n"
    _atomic_write(out_pdf.with_suffix(".json"), lambda fh: fh.write(text.encode("utf-8")))


def _load_settings(text: str) -> dict:
    path = Path(text)
    if text.endswith(".json") and path.exists():
        text = path.read_text(encoding="utf-8")
    settings = json.loads(text or "{}")
    if not isinstance(settings, dict):
        raise ValueError("--settings must be a JSON object")
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sftrl.figures", description="Draw one figure from the metric tables."
    )
    parser.add_argument("name", choices=sorted(FIGURES))
    parser.add_argument("--tables", required=True, type=Path, help="folder of <table>.parquet")
    parser.add_argument("--out", required=True, type=Path, help="output PDF path")
    parser.add_argument("--settings", default="{}", help="JSON object, or a .json file path")
    args = parser.parse_args(argv)
    build_figure(args.name, args.tables, args.out, _load_settings(args.settings))
    return 0
