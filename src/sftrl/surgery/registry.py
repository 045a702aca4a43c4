"""The surgery method registry: each method is declared once, by a ``METHOD = Method(...)`` in
its own module of this package, and everything else reads it.

A method's declaration names its function, its parameters (config key, function argument,
command-line option), and how tables and figures show one configured entry (a short setting
label, the x value, axis label, colour, recovery panel). The config schema of the entry lives
in ``src/sftrl/schemas/config.schema.yaml`` under ``surgery.<name>`` (the single source of its
defaults); a test keeps the two equal. Adding a method is one new module here, its tests and
its schema entry (docs/architecture.md, "Add a surgery method").

Light on purpose: no torch at import, so the plan, the tables stage and the figures can read
the registry.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Keys the workflow puts into params to describe the two models (not how to operate on them).
ROLE_KEYS = ("donor", "recipient")


@dataclass(frozen=True)
class Param:
    """One parameter: ``key`` in the config entry (and stage params), ``arg`` the function's
    keyword (default: the key), ``cli`` the ``argparse.add_argument`` keywords of
    ``--<arg with dashes>``; ``stage=False`` for options that only tune hardware (not in params,
    so not in the content id)."""

    key: str
    cli: dict[str, Any] = field(default_factory=dict)
    arg: str | None = None
    stage: bool = True

    @property
    def kwarg(self) -> str:
        return self.arg or self.key

    @property
    def flag(self) -> str:
        return "--" + self.kwarg.replace("_", "-")


@dataclass(frozen=True)
class Method:
    """A surgery method. ``function(donor_dir, recipient_dir, out_dir, **kwargs) -> summary``.

    ``setting(entry, n_layers) -> (label, x)``: the short label of a configured entry and its x
    value in tables and figures (``n_layers``: the recipient's decoder layers). ``swept``: the
    entry key the x axis sweeps (the other keys make line-style variants). ``panel``: the
    recovery figure's panel; methods sharing one plot the same x quantity (``"directions"``:
    the UV merge and its random-direction control), titled by the first one's ``label``.
    """

    name: str
    function: Callable[..., dict[str, Any]]
    help: str
    params: tuple[Param, ...]
    setting: Callable[[dict[str, Any], int], tuple[str, float]]
    label: str
    xlabel: str
    swept: str
    color: str
    panel: str
    x_percent: bool
    order: int

    def kwargs(self, params: dict[str, Any]) -> dict[str, Any]:
        """The function's keyword arguments from stage params (config keys); unknown keys raise."""
        by_key = {p.key: p for p in self.params if p.stage}
        unknown = sorted(set(params) - set(by_key))
        if unknown:
            raise ValueError(
                f"surgery {self.name}: unknown params {unknown}; known: {sorted(by_key)}"
            )
        return {by_key[key].kwarg: value for key, value in params.items()}


_METHODS: dict[str, Method] = {}


def methods() -> dict[str, Method]:
    """Every method of the package (modules with a ``METHOD``), in ``order``."""
    if not _METHODS:
        package = importlib.import_module("sftrl.surgery")
        found = []
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.startswith("_"):  # __main__ runs the command line
                continue
            module = importlib.import_module(f"sftrl.surgery.{info.name}")
            method = getattr(module, "METHOD", None)
            if isinstance(method, Method):
                found.append(method)
        names = [m.name for m in found]
        if len(set(names)) != len(names):
            raise RuntimeError(f"two surgery modules declare one method name: {sorted(names)}")
        _METHODS.update((m.name, m) for m in sorted(found, key=lambda m: (m.order, m.name)))
    return _METHODS


def get(name: str) -> Method:
    known = methods()
    if name not in known:
        raise ValueError(f"surgery: params.method must be one of {list(known)}, got {name!r}")
    return known[name]


def method_kwargs(params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split stage params into the method name and that function's keyword arguments."""
    params = {k: v for k, v in params.items() if k not in ROLE_KEYS}
    method = get(params.pop("method", None))
    return method.name, method.kwargs(params)


def setting(params: dict[str, Any], n_layers: int) -> tuple[str, float]:
    """Label and x value of one surgery's params (see ``Method.setting``)."""
    entry = {k: v for k, v in params.items() if k not in (*ROLE_KEYS, "method")}
    return get(params["method"]).setting(entry, n_layers)
