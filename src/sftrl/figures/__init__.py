"""The paper's figures, drawn from the tidy metric tables only (never from a model).

One module per figure: ``sftrl/figures/<name>.py`` draws ``results/figures/<name>.pdf`` and
declares ``TABLES`` (the tables it reads) and ``draw(tables, settings) -> (Figure, FigureInfo)``.
``tables`` maps a table name (``evals``, ``recovery``, ``sft_curve``, ``sft_heldout``,
``rl_curves``, ``coupling``, ``spectrum_values``, ``spectrum_angles``, ``spectrum_layers``) to a
DataFrame; a table that is missing, empty or lacks a column a panel needs gives that panel a
"no data" note instead of an error. ``style`` holds what the figures share and ``build`` writes
them (PDF + JSON sidecar) and is the command line.

The registry is the package itself: every module here other than ``HELPERS`` is a figure, so
adding a figure is one new module plus its tests (docs/architecture.md, "Add a figure").
``FIGURES`` is read from the file names without importing matplotlib (the plan needs it).
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

HELPERS = frozenset({"style", "build"})

FIGURES: tuple[str, ...] = tuple(
    sorted(
        info.name
        for info in pkgutil.iter_modules(__path__)
        if info.name not in HELPERS and not info.name.startswith("_")
    )
)


def figure_module(name: str) -> ModuleType:
    """The module that draws figure ``name`` (imports matplotlib)."""
    if name not in FIGURES:
        raise KeyError(f"unknown figure {name!r}; known: {list(FIGURES)}")
    return importlib.import_module(f"sftrl.figures.{name}")
