"""The paper's figures, drawn from the tidy metric tables only (never from a model).

Every figure has a ``draw_<name>(tables, settings) -> (Figure, info)`` that builds the matplotlib
figure and a ``plot_<name>(tables, out_pdf, settings) -> dict`` that also writes it as a vector
PDF. ``tables`` maps a table name (``evals``, ``recovery``, ``sft_curve``, ``sft_heldout``,
``rl_curves``, ``coupling``, ``spectrum_values``, ``spectrum_angles``, ``spectrum_layers``) to a
DataFrame; a table that is missing, empty or lacks a column a panel needs gives that panel a
"no data" note instead of an error. The returned dict names the figure, its panel titles, the
panels that had no data, and the artifact ids (``artifact`` column) of the rows drawn.

``build_figure(name, tables_dir, out_pdf, settings)`` reads ``<tables_dir>/<table>.parquet``,
draws, writes the PDF atomically (temp file, then rename) and a JSON sidecar next to it
(``out_pdf.with_suffix(".json")``) with the figure name, the tables read (with their sha256),
the artifact ids drawn from and the settings. Command line::

    python -m sftrl.figures recovery --tables results/tables --out results/figures/recovery.pdf

Success rates are fractions in [0, 1] in the tables and are shown as percentages. This module
must stay light: no torch, no transformers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import Formatter, MaxNLocator  # noqa: E402

__all__ = [
    "ALGO_COLORS",
    "SPLIT_COLORS",
    "FIGURES",
    "FIGURE_TABLES",
    "TABLE_COLUMNS",
    "REQUIRED",
    "apply_theme",
    "read_tables",
    "save_pdf",
    "build_figure",
    "main",
    "draw_recovery",
    "plot_recovery",
    "draw_sft_dynamics",
    "plot_sft_dynamics",
    "draw_rl_curves",
    "plot_rl_curves",
    "draw_spectrum",
    "plot_spectrum",
    "draw_angles",
    "plot_angles",
    "draw_surgery",
    "plot_surgery",
    "draw_coupling",
    "plot_coupling",
]

# ---------------------------------------------------------------------------------------------
# Table contracts: the columns the figures read. A table lacking a REQUIRED column is drawn as
# "no data" (with a warning); a missing optional column is read as all-NaN.

TABLE_COLUMNS: dict[str, list[str]] = {
    "evals": [
        "stage", "artifact", "checkpoint", "epoch", "algorithm", "rl_step", "method",
        "setting", "fraction", "split", "success", "ci_low", "ci_high",
    ],
    "recovery": [
        "method", "setting", "fraction", "split", "success", "donor_success",
        "recipient_success", "recovery", "recovery_low", "recovery_high",
    ],
    "sft_curve": ["step", "epoch", "train_loss"],
    "sft_heldout": ["epoch", "heldout_loss"],
    "rl_curves": ["algorithm", "start_epoch", "seed", "step"],
    "coupling": ["kind", "algorithm", "start_epoch", "step", "value", "ref_base", "ref_start"],
    "spectrum_values": ["pair", "matrix", "layer", "module", "index", "s_ref", "s_tgt"],
    "spectrum_angles": ["pair", "matrix", "layer", "module", "rel_index", "angle_u", "angle_v"],
    "spectrum_layers": [
        "pair", "layer", "module", "mean_angle_u", "mean_angle_v", "rotation_share",
        "scaling_share",
    ],
}  # fmt: skip
REQUIRED: dict[str, list[str]] = {
    "evals": ["stage", "split", "success"],
    "recovery": ["method", "split"],
    "sft_curve": ["epoch", "train_loss"],
    "sft_heldout": ["epoch", "heldout_loss"],
    "rl_curves": ["algorithm", "start_epoch", "step"],
    "coupling": ["kind", "algorithm", "step", "value"],
    "spectrum_values": ["pair", "matrix", "index", "s_ref", "s_tgt"],
    "spectrum_angles": ["pair", "rel_index", "angle_u", "angle_v"],
    "spectrum_layers": ["pair", "layer"],
}

NUMERIC = {
    "epoch",
    "seed",
    "rl_step",
    "fraction",
    "success",
    "ci_low",
    "ci_high",
    "donor_success",
    "recipient_success",
    "recovery",
    "recovery_low",
    "recovery_high",
    "step",
    "train_loss",
    "heldout_loss",
    "start_epoch",
    "value",
    "ref_base",
    "ref_start",
    "layer",
    "index",
    "s_ref",
    "s_tgt",
    "rel_index",
    "angle_u",
    "angle_v",
    "mean_angle_u",
    "mean_angle_v",
    "rotation_share",
    "scaling_share",
    "reward",
    "kl",
    "entropy",
    "value_loss",
    "clip_frac",
}

# Which tables each figure reads.
FIGURE_TABLES: dict[str, tuple[str, ...]] = {
    "recovery": ("evals", "recovery"),
    "sft_dynamics": ("evals", "sft_curve", "sft_heldout"),
    "rl_curves": ("rl_curves",),
    "spectrum": ("spectrum_values",),
    "angles": ("spectrum_angles", "spectrum_layers"),
    "surgery": ("evals", "recovery"),
    "coupling": ("coupling",),
}

# ---------------------------------------------------------------------------------------------
# Theme: one palette for algorithms, one for splits, used by every figure.

ALGO_COLORS = {"ppo": "#0173b2", "grpo": "#d55e00", "rloo": "#029e73"}
ALGO_LINESTYLES = {"ppo": "-", "grpo": "--", "rloo": "-."}
EXTRA_COLORS = ["#cc78bc", "#ca9161", "#949494", "#56b4e9", "#ece133", "#fbafe4"]
SPLIT_COLORS = {"id_seen": "#cc78bc", "id_unseen": "#ca9161", "ood": "#222222"}
SPLIT_LABELS = {"id_seen": "ID seen", "id_unseen": "ID unseen", "ood": "OOD"}
SPLIT_ORDER = ["id_seen", "id_unseen", "ood"]
METHOD_ORDER = ["uv", "reset", "interp"]
METHOD_LABELS = {"uv": "UV merge", "reset": "layer reset", "interp": "interpolation"}
METHOD_COLORS = {"uv": "#6a3d9a", "reset": "#a6761d", "interp": "#e7298a"}
METHOD_KEYS = {"uv": "top", "reset": "layers", "interp": "alpha"}  # the swept setting
METHOD_XLABELS = {
    "uv": "top directions from donor (% of rank)",
    "reset": "layers reset to donor (% of layers)",
    "interp": "interpolation weight α toward donor",
}
# Line style and marker per surgery variant; never plain dashed or dotted, which mark the donor
# and recipient reference lines.
VARIANT_STYLES = [("-", "o"), ("-.", "s"), ((0, (6, 2)), "^"), ((0, (3, 1, 1, 1, 1, 1)), "D")]
METRIC_TITLES = {
    "reward": "Mean reward",
    "success": "Success",
    "kl": "KL divergence",
    "entropy": "Entropy",
    "value_loss": "Value loss",
    "clip_frac": "Clipped fraction",
}
METRIC_LABELS = {
    "reward": "mean reward",
    "success": "success (%)",
    "kl": "KL divergence (nats)",
    "entropy": "entropy (nats/token)",
    "value_loss": "value loss",
    "clip_frac": "clipped fraction (%)",
}
PERCENT_METRICS = {"success", "clip_frac"}
NO_DATA_COLOR = "0.45"


THEME = {"context": "paper", "style": "whitegrid", "font_scale": 1.1}


def apply_theme(theme: dict | None = None) -> None:
    """The shared seaborn theme: whitegrid / paper context (``theme`` may override
    ``context``, ``style``, ``font_scale`` and add matplotlib ``rc`` keys), the colorblind
    palette, embedded TrueType fonts, left-aligned titles, frameless legends."""
    theme = THEME | dict(theme or {})
    rc = {
        "pdf.fonttype": 42,
        "ps.fonttype": 42,
        "axes.titlelocation": "left",
        "legend.frameon": False,
        "lines.linewidth": 1.5,
        "lines.markersize": 4.5,
        "figure.dpi": 100,
    } | dict(theme.get("rc") or {})
    sns.set_theme(
        context=theme["context"],
        style=theme["style"],
        palette="colorblind",
        font_scale=float(theme["font_scale"]),
        rc=rc,
    )


def _ordered(values: Iterable, order: list[str]) -> list:
    """Unique non-null values, those in ``order`` first (in that order), then the rest sorted."""
    present = {v for v in values if isinstance(v, str) or not pd.isna(v)}
    known = [v for v in order if v in present]
    return known + sorted((v for v in present if v not in order), key=str)


def _algo_colors(algos: list) -> dict:
    extra = iter(EXTRA_COLORS * 4)
    return {a: ALGO_COLORS.get(str(a).lower()) or next(extra) for a in algos}


def _algo_label(algo) -> str:
    return str(algo).upper()


def _split_color(split, i: int = 0) -> str:
    return SPLIT_COLORS.get(split, EXTRA_COLORS[i % len(EXTRA_COLORS)])


def _seq_colors(values: list) -> dict:
    """Sequential colours (viridis, without its pale yellow end) for ordered values."""
    cmap = matplotlib.colormaps["viridis"]
    n = len(values)
    return {v: cmap(0.85 * i / max(n - 1, 1)) for i, v in enumerate(values)}


def _cat_colors(values: list) -> dict:
    palette = sns.color_palette("colorblind", max(len(values), 1))
    if len(values) > len(palette):
        palette = sns.color_palette("husl", len(values))
    return dict(zip(values, palette, strict=False))


def _fmt_epoch(e) -> str:
    return f"{float(e):g}"


# ---------------------------------------------------------------------------------------------
# Small helpers shared by the figures.


class _Info:
    """What a figure drew: panel titles, panels without data, artifact ids of the rows used."""

    def __init__(self, figure: str):
        self.figure = figure
        self.panels: list[str] = []
        self.empty: list[str] = []
        self.artifacts: set[str] = set()

    def panel(self, ax, title: str) -> None:
        ax.set_title(title)
        self.panels.append(title)

    def no_data(self, ax, title: str, why: str = "no data") -> None:
        self.panel(ax, title)
        self.empty.append(title)
        ax.text(
            0.5,
            0.5,
            why,
            transform=ax.transAxes,
            ha="center",
            va="center",
            color=NO_DATA_COLOR,
            fontsize=11,
            fontstyle="italic",
        )
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)

    def use(self, df: pd.DataFrame) -> None:
        if "artifact" in df.columns and len(df):
            self.artifacts.update(str(a) for a in df["artifact"].dropna().unique())

    def as_dict(self) -> dict:
        return {
            "figure": self.figure,
            "panels": list(self.panels),
            "empty_panels": list(self.empty),
            "artifacts": sorted(self.artifacts),
        }


def _table(tables: dict, name: str) -> pd.DataFrame:
    """The table ``name`` with every column in ``TABLE_COLUMNS`` (missing optional ones as
    NaN), or an empty frame with those columns when it is absent, empty or lacks a required
    column."""
    cols = TABLE_COLUMNS[name]
    df = tables.get(name)
    if df is None or len(df) == 0:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
    missing = [c for c in REQUIRED[name] if c not in df.columns]
    if missing:
        warnings.warn(f"table {name!r} lacks columns {missing}: drawn as no data", stacklevel=3)
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
    df = df.copy()
    for c in cols:
        if c not in df.columns:
            df[c] = np.nan
    for c in df.columns:
        if c in NUMERIC:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def _is(df: pd.DataFrame, col: str, value) -> pd.Series:
    """Boolean mask ``df[col] == value`` that works on any dtype (string or all-NaN)."""
    return df[col].astype("object") == value


CONTEXT_SCALE = {"paper": 0.8, "notebook": 1.0, "talk": 1.5, "poster": 2.0}  # seaborn's


def _figure(width: float, height: float, settings: dict) -> Figure:
    """A constrained-layout figure in the shared theme; sizes are for the default theme and
    grow with larger fonts (context, font_scale) so that text keeps its room."""
    theme = THEME | dict(settings.get("theme") or {})
    apply_theme(theme)
    font = CONTEXT_SCALE.get(theme["context"], 1.0) * float(theme["font_scale"])
    grow = max(1.0, font / (CONTEXT_SCALE["paper"] * THEME["font_scale"]))
    return Figure(figsize=(width * grow, height * grow), layout="constrained")


class _PercentTicks(Formatter):
    """Fractions shown as percentages, with just the decimals the tick positions need."""

    @staticmethod
    def _format(x: float, decimals: int) -> str:
        return f"{100 * x:.{decimals}f}%".replace("-", "\N{MINUS SIGN}")

    def format_ticks(self, values):
        scaled = np.asarray(values, float) * 100
        decimals = 0
        while decimals < 4 and not np.allclose(np.round(scaled, decimals), scaled, atol=1e-6):
            decimals += 1
        return [self._format(v, decimals) for v in values]

    def __call__(self, x, pos=None):
        return self._format(x, 1)


def _percent(axis) -> None:
    axis.set_major_formatter(_PercentTicks())


def _pad_single_x(ax, xs, pad: float = 0.1) -> None:
    """A panel whose points all sit at one x gets a sensible x range around it."""
    xs = np.unique(np.asarray(xs, float)[np.isfinite(np.asarray(xs, float))])
    if len(xs) == 1:
        ax.set_xlim(xs[0] - pad, xs[0] + pad)


def _band(ax, x, y, lo, hi, color, label=None, marker="o", linestyle="-", alpha=0.18):
    """A line with markers and a shaded interval; NaN bounds fall back to the point."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    lo = np.where(np.isfinite(np.asarray(lo, float)), lo, y)
    hi = np.where(np.isfinite(np.asarray(hi, float)), hi, y)
    if len(x) > 1:
        ax.fill_between(x, lo, hi, color=color, alpha=alpha, linewidth=0)
    else:
        ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="none", ecolor=color, capsize=2)
    ax.plot(x, y, color=color, marker=marker, linestyle=linestyle, label=label)


def _errorbars(ax, x, y, lo, hi, clip=(-math.inf, math.inf), **kwargs):
    """Error bars from absolute bounds; non-finite bounds are clipped to ``clip``."""
    y = np.asarray(y, float)
    lo = np.clip(np.nan_to_num(np.asarray(lo, float), nan=np.nan, neginf=clip[0]), *clip)
    hi = np.clip(np.nan_to_num(np.asarray(hi, float), nan=np.nan, posinf=clip[1]), *clip)
    lo = np.where(np.isnan(lo), y, lo)
    hi = np.where(np.isnan(hi), y, hi)
    yerr = [np.maximum(y - lo, 0), np.maximum(hi - y, 0)]
    return ax.errorbar(x, y, yerr=yerr, capsize=2.5, **kwargs)


def _fig_legend(fig: Figure, axes, extra: list | None = None, ncol: int = 4, title=None):
    """One legend for the whole figure, below the panels (never on top of data)."""
    handles, labels = [], []
    for ax in np.ravel(axes):
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label and not label.startswith("_") and label not in labels:
                handles.append(h)
                labels.append(label)
    for h in extra or []:
        if h.get_label() not in labels:
            handles.append(h)
            labels.append(h.get_label())
    if handles:
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncol=_legend_columns(fig, labels, ncol),
            title=title,
        )


def _legend_columns(fig: Figure, labels: list[str], most: int) -> int:
    """The most columns (up to ``most``) whose estimated width fits the figure."""
    size = FontProperties(size=matplotlib.rcParams["legend.fontsize"]).get_size_in_points()
    widths = [0.6 * size * len(label) + 4.0 * size for label in labels]  # text + handle, pt
    room = 0.95 * fig.get_figwidth() * 72
    for ncol in range(min(most, len(labels)), 1, -1):
        nrows = math.ceil(len(labels) / ncol)
        columns = [widths[c * nrows : (c + 1) * nrows] for c in range(ncol)]
        if sum(max(col, default=0) for col in columns) <= room:
            return ncol
    return 1


def _settings_parts(setting) -> list[str]:
    if not isinstance(setting, str):
        return []
    return [p for p in re.split(r"[,;\s]+", setting.strip()) if p]


def _variant(setting, key: str) -> str:
    """The parts of a surgery setting other than the swept one, e.g. ``tail=0.1``; a part whose
    value equals the swept value is written ``tail=same`` (``top=0.2,tail=0.2`` is one head +
    tail sweep, not one variant per fraction)."""
    parts = _settings_parts(setting)
    swept = [p.split("=", 1)[1] for p in parts if p.startswith(f"{key}=")]
    out = []
    for part in parts:
        if part.startswith(f"{key}="):
            continue
        name, _, value = part.partition("=")
        out.append(f"{name}=same" if swept and value == swept[0] else part)
    return ",".join(out)


def _variant_label(method: str, variant: str) -> str:
    if not variant:
        return "top only" if method == "uv" else "default"
    return "head + tail" if variant == "tail=same" else variant


def _setting_value(setting, key: str) -> float:
    for part in _settings_parts(setting):
        if part.startswith(f"{key}="):
            try:
                return float(part.split("=", 1)[1])
            except ValueError:
                return math.nan
    return math.nan


def _with_x(df: pd.DataFrame) -> pd.DataFrame:
    """Surgery rows with ``x`` (the ``fraction``, else the swept setting) and ``variant``."""
    df = df.copy()
    keys = df["method"].map(lambda m: METHOD_KEYS.get(m, ""))
    parsed = [_setting_value(s, k) for s, k in zip(df["setting"], keys, strict=True)]
    df["x"] = df["fraction"].where(df["fraction"].notna(), pd.Series(parsed, index=df.index))
    df["variant"] = [_variant(s, k) for s, k in zip(df["setting"], keys, strict=True)]
    return df[df["x"].notna()]


def _epoch0(df: pd.DataFrame) -> pd.DataFrame:
    """Base-model rows get epoch 0 (the start of SFT)."""
    df = df.copy()
    df.loc[_is(df, "stage", "base"), "epoch"] = 0.0
    return df


def _mean_by(df: pd.DataFrame, key: str, cols: list[str]) -> pd.DataFrame:
    """Mean of ``cols`` per ``key`` (several seeds or artifacts at one x), sorted by key."""
    return df.groupby(key, as_index=False)[cols].mean().sort_values(key)


# ---------------------------------------------------------------------------------------------
# recovery.pdf: the headline.


def _final_rl(rl: pd.DataFrame) -> pd.DataFrame:
    """Each RL artifact's final checkpoint: the ``final`` rows, else its last step."""
    parts = []
    for _, g in rl.groupby("artifact", sort=True):
        final = g[_is(g, "checkpoint", "final")]
        parts.append(final if len(final) else g[g["rl_step"] == g["rl_step"].max()])
    return pd.concat(parts) if parts else rl.iloc[0:0]


def _panel_rl_from_sft(ax, evals: pd.DataFrame, split: str, info: _Info, title: str) -> None:
    rows = _epoch0(evals[_is(evals, "split", split)])
    sft = rows[rows["stage"].isin(["base", "sft"]) & rows["epoch"].notna()]
    rl = _final_rl(rows[_is(rows, "stage", "rl") & rows["epoch"].notna()])
    rl = rl[rl["success"].notna()]
    if sft.empty and rl.empty:
        info.no_data(ax, title)
        return
    info.panel(ax, title)
    name = SPLIT_LABELS.get(split, split)
    curve = _mean_by(sft, "epoch", ["success", "ci_low", "ci_high"])
    if len(curve):
        info.use(sft)
        _band(
            ax,
            curve["epoch"],
            curve["success"],
            curve["ci_low"],
            curve["ci_high"],
            color="0.15",
            label=f"SFT checkpoints ({name}, 95% Wilson CI)",
        )
        base = curve[curve["epoch"] == 0]
        if _is(sft, "stage", "base").any() and len(base):
            ax.plot(
                base["epoch"],
                base["success"],
                linestyle="none",
                marker="D",
                ms=6,
                color="0.15",
                markerfacecolor="white",
                label="base model (epoch 0)",
            )
    at_epoch = dict(zip(curve["epoch"], curve["success"], strict=True))
    algos = _ordered(rl["algorithm"], list(ALGO_COLORS))
    colors = _algo_colors(algos)
    epochs = np.sort(curve["epoch"].unique()) if len(curve) else np.array([0.0, 1.0])
    spacing = float(np.min(np.diff(epochs))) if len(epochs) > 1 else 1.0
    for i, algo in enumerate(algos):
        sub = rl[_is(rl, "algorithm", algo)]
        info.use(sub)
        offset = (i - (len(algos) - 1) / 2) * 0.2 * spacing
        x = sub["epoch"].to_numpy(float) + offset
        for xi, start, end in zip(x, sub["epoch"], sub["success"], strict=True):
            near = [e for e in at_epoch if abs(e - start) < 1e-6]
            if near:
                ax.annotate(
                    "",
                    xy=(xi, end),
                    xytext=(xi, at_epoch[near[0]]),
                    arrowprops={
                        "arrowstyle": "-|>",
                        "color": colors[algo],
                        "lw": 1.8,
                        "shrinkA": 0,
                        "shrinkB": 2,
                        "mutation_scale": 11,
                    },
                    zorder=4,
                )
        _errorbars(
            ax,
            x,
            sub["success"],
            sub["ci_low"],
            sub["ci_high"],
            fmt="o",
            color=colors[algo],
            ecolor=matplotlib.colors.to_rgba(colors[algo], 0.4),
            elinewidth=1.0,
            ms=5,
            zorder=3,
            label=f"{_algo_label(algo)} from SFT epoch (arrow: SFT → RL final)",
        )
    ax.set_xlabel("SFT epoch (0 = base model; RL drawn at its start epoch)")
    ax.set_ylabel(f"{name} success (%)")
    _percent(ax.yaxis)
    ax.set_ylim(bottom=0)


def _panel_recovery(
    ax,
    rec: pd.DataFrame,
    methods: list[str],
    info: _Info,
    title: str,
    xlabel: str,
    percent_x: bool,
    split_name: str,
) -> None:
    rec = _with_x(rec[rec["method"].isin(methods)])
    rec = rec[rec["recovery"].notna()]
    if rec.empty:
        info.no_data(ax, title)
        return
    info.panel(ax, title)
    info.use(rec)
    values = []
    for method in _ordered(rec["method"], methods):
        sub = rec[_is(rec, "method", method)]
        variants = sorted(sub["variant"].unique())
        for j, variant in enumerate(variants):
            g = _mean_by(
                sub[sub["variant"] == variant], "x", ["recovery", "recovery_low", "recovery_high"]
            )
            linestyle, marker = VARIANT_STYLES[j % len(VARIANT_STYLES)]
            label = METHOD_LABELS.get(method, method)
            if len(variants) > 1 or variant:
                label += f": {_variant_label(method, variant)}"
            _errorbars(
                ax,
                g["x"],
                g["recovery"],
                g["recovery_low"],
                g["recovery_high"],
                clip=(-1.0, 2.0),
                color=METHOD_COLORS.get(method, "0.3"),
                linestyle=linestyle,
                marker=marker,
                label=label,
            )
            values.extend(g["recovery"].tolist())
    _pad_single_x(ax, rec["x"])
    ax.axhline(0, color="0.35", linestyle=":", linewidth=1, label="0% = recipient (no recovery)")
    ax.axhline(1, color="0.35", linestyle="--", linewidth=1, label="100% = donor (fully recovered)")
    low = min(-0.1, np.nanmin(values) - 0.1)
    high = max(1.15, np.nanmax(values) + 0.1)
    ax.set_ylim(max(low, -1.0), min(high, 2.0))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"lost {split_name} success recovered (%)")
    _percent(ax.yaxis)
    if percent_x:
        _percent(ax.xaxis)


def draw_recovery(tables: dict, settings: dict) -> tuple[Figure, _Info]:
    """A: success over SFT epochs with RL from each epoch as arrows; B/C: surgery recovery."""
    split = settings.get("split", "ood")
    info = _Info("recovery")
    fig = _figure(12.5, 4.4, settings)
    axes = fig.subplots(1, 3, width_ratios=[1.35, 1, 1])
    evals = _table(tables, "evals")
    rec = _table(tables, "recovery")
    rec = rec[_is(rec, "split", split)]
    name = SPLIT_LABELS.get(split, split)
    _panel_rl_from_sft(axes[0], evals, split, info, f"A  {name} success: SFT, then RL")
    _panel_recovery(
        axes[1],
        rec,
        ["uv"],
        info,
        "B  Recovery by UV merge",
        METHOD_XLABELS["uv"],
        percent_x=True,
        split_name=name,
    )
    _panel_recovery(
        axes[2],
        rec,
        ["reset", "interp"],
        info,
        "C  Recovery by layer reset / interpolation",
        "layers reset (%) or interpolation α",
        percent_x=False,
        split_name=name,
    )
    _fig_legend(fig, axes, ncol=3)
    return fig, info


# ---------------------------------------------------------------------------------------------
# sft_dynamics.pdf


def draw_sft_dynamics(tables: dict, settings: dict) -> tuple[Figure, _Info]:
    """A: success per split over SFT epochs; B: SFT loss (train per step, held-out per epoch)."""
    info = _Info("sft_dynamics")
    fig = _figure(10.5, 4.0, settings)
    ax_a, ax_b = fig.subplots(1, 2)
    evals = _epoch0(_table(tables, "evals"))
    rows = evals[evals["stage"].isin(["base", "sft"]) & evals["epoch"].notna()]
    title_a = "A  Success by split over SFT"
    if rows.empty:
        info.no_data(ax_a, title_a)
    else:
        info.panel(ax_a, title_a)
        info.use(rows)
        for i, split in enumerate(_ordered(rows["split"], SPLIT_ORDER)):
            c = _mean_by(rows[_is(rows, "split", split)], "epoch", ["success", "ci_low", "ci_high"])
            _band(
                ax_a,
                c["epoch"],
                c["success"],
                c["ci_low"],
                c["ci_high"],
                color=_split_color(split, i),
                label=SPLIT_LABELS.get(split, split),
            )
        ax_a.set_xlabel("SFT epoch (0 = base model)")
        ax_a.set_ylabel("success (%), 95% Wilson CI")
        _percent(ax_a.yaxis)
        ax_a.set_ylim(bottom=0)

    curve = _table(tables, "sft_curve").dropna(subset=["epoch", "train_loss"])
    held = _table(tables, "sft_heldout").dropna(subset=["epoch", "heldout_loss"])
    title_b = "B  SFT loss"
    if curve.empty and held.empty:
        info.no_data(ax_b, title_b)
    else:
        info.panel(ax_b, title_b)
        if len(curve):
            curve = curve.sort_values(["epoch", "step"])
            ax_b.plot(
                curve["epoch"],
                curve["train_loss"],
                color="0.6",
                linewidth=0.8,
                label="train loss (per step)",
            )
        if len(held):
            h = _mean_by(held, "epoch", ["heldout_loss"])
            ax_b.plot(
                h["epoch"],
                h["heldout_loss"],
                color="0.1",
                marker="o",
                label="held-out loss (per epoch)",
            )
        ax_b.set_xlabel("SFT epoch")
        ax_b.set_ylabel("cross-entropy on answer tokens (nats)")
    _fig_legend(fig, [ax_a, ax_b], ncol=5)
    return fig, info


# ---------------------------------------------------------------------------------------------
# rl_curves.pdf


def draw_rl_curves(tables: dict, settings: dict) -> tuple[Figure, _Info]:
    """Reward, success, KL (settings ``metrics``) over RL updates: rows = metrics, columns =
    algorithms, colour = SFT epoch RL starts from (mean over seeds)."""
    info = _Info("rl_curves")
    metrics = list(settings.get("metrics", ["reward", "success", "kl"]))
    rl = _table(tables, "rl_curves")
    rl = rl[rl["step"].notna()]
    algos = _ordered(rl["algorithm"], list(ALGO_COLORS)) if len(rl) else []
    if not algos:
        fig = _figure(3.6 * len(metrics) + 0.5, 3.2, settings)
        for ax, metric in zip(np.ravel(fig.subplots(1, len(metrics))), metrics, strict=True):
            info.no_data(ax, METRIC_TITLES.get(metric, metric))
        return fig, info
    epochs = sorted(rl["start_epoch"].dropna().unique())
    colors = _seq_colors(epochs)
    n_seeds = rl["seed"].nunique()
    fig = _figure(3.7 * len(algos) + 0.6, 2.5 * len(metrics) + 1.0, settings)
    axes = fig.subplots(len(metrics), len(algos), sharex="col", sharey="row", squeeze=False)
    letters = iter("ABCDEFGHIJKLMNOPQRSTUVWXYZ" * 4)
    for r, metric in enumerate(metrics):
        name = METRIC_TITLES.get(metric, metric)
        for c, algo in enumerate(algos):
            ax = axes[r, c]
            title = f"{next(letters)}  {name}, {_algo_label(algo)}"
            sub = rl[_is(rl, "algorithm", algo)]
            if metric not in sub.columns or sub[metric].isna().all():
                info.no_data(ax, title, f"no {name.lower()} logged")
                continue
            info.panel(ax, title)
            for e in epochs:
                g = sub[sub["start_epoch"] == e]
                if g[metric].notna().any():
                    m = _mean_by(g, "step", [metric]).dropna()
                    ax.plot(
                        m["step"],
                        m[metric],
                        color=colors[e],
                        linestyle=ALGO_LINESTYLES.get(str(algo).lower(), "-"),
                        label=f"SFT epoch {_fmt_epoch(e)}",
                    )
            if metric in PERCENT_METRICS:
                _percent(ax.yaxis)
            if c == 0:
                ax.set_ylabel(METRIC_LABELS.get(metric, metric))
            if r == len(metrics) - 1:
                ax.set_xlabel("RL update (step)")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    title = "RL starts from" + (f" (mean over {n_seeds} seeds)" if n_seeds > 1 else "")
    _fig_legend(fig, axes, ncol=8, title=title)
    return fig, info


# ---------------------------------------------------------------------------------------------
# spectrum.pdf


def _choose_matrices(sv: pd.DataFrame, wanted) -> list[str]:
    """Matrices named in ``wanted`` (exact name or a substring of one), else the first layer's
    q_proj and down_proj, else the first two matrices present."""
    names = list(dict.fromkeys(sv.sort_values(["layer", "matrix"])["matrix"].astype(str)))
    chosen: list[str] = []
    if wanted:
        for w in [wanted] if isinstance(wanted, str) else wanted:
            hit = [n for n in names if n == w] or [n for n in names if str(w) in n]
            if hit and hit[0] not in chosen:
                chosen.append(hit[0])
        if chosen:
            return chosen
    layers = sv["layer"].dropna()
    if len(layers):
        first = sv[sv["layer"] == layers.min()]
        for module in ("q_proj", "down_proj"):
            hit = first[first["module"].astype(str).str.endswith(module)]["matrix"]
            if len(hit) and str(hit.iloc[0]) not in chosen:
                chosen.append(str(hit.iloc[0]))
    return chosen or names[:2]


def _matrix_label(rows: pd.DataFrame, matrix: str) -> str:
    """``layer 0 q_proj`` when layer and module are known, else a shortened matrix name."""
    layer = rows["layer"].dropna()
    module = rows["module"].dropna()
    if len(module):
        short = str(module.iloc[0]).split(".")[-1]
        return f"layer {int(layer.iloc[0])} {short}" if len(layer) else short
    return re.sub(r"^model\.|\.weight$", "", matrix)


def _pretty_pair(pair) -> str:
    return str(pair).replace("->", "→")


def _pair_ends(pair: str) -> tuple[str, str]:
    parts = [p.strip() for p in str(pair).split("->")]
    return (parts[0], parts[1]) if len(parts) == 2 else (f"{pair} (ref)", f"{pair} (target)")


def draw_spectrum(tables: dict, settings: dict) -> tuple[Figure, _Info]:
    """Sorted singular values of a few matrices for every checkpoint (log y), and their
    relative change per comparison: the values stay put."""
    info = _Info("spectrum")
    sv = _table(tables, "spectrum_values").dropna(subset=["index", "s_ref", "s_tgt"])
    chosen = _choose_matrices(sv, settings.get("matrices")) if len(sv) else []
    if not chosen:
        fig = _figure(8.0, 3.4, settings)
        ax_a, ax_b = fig.subplots(1, 2)
        info.no_data(ax_a, "A  Singular values")
        info.no_data(ax_b, "B  Relative change of singular values")
        return fig, info
    pairs = list(dict.fromkeys(sv["pair"].astype(str)))
    checkpoints = list(dict.fromkeys(n for p in pairs for n in _pair_ends(p)))
    ck_colors = _seq_colors(checkpoints)
    ck_styles = {n: ["-", "--", "-.", ":"][i % 4] for i, n in enumerate(checkpoints)}
    pair_colors = _cat_colors(pairs)
    n = len(chosen)
    fig = _figure(max(4.2 * n, 6.0) + 0.4, 6.6, settings)
    axes = fig.subplots(2, n, squeeze=False)
    for col, matrix in enumerate(chosen):
        rows = sv[sv["matrix"].astype(str) == matrix]
        label = _matrix_label(rows, matrix)
        top, bottom = axes[0, col], axes[1, col]
        info.panel(top, f"A{col + 1}  Singular values, {label}")
        info.panel(bottom, f"B{col + 1}  Relative change, {label}")
        drawn = set()
        for pair in pairs:
            g = rows[rows["pair"].astype(str) == pair].sort_values("index")
            if g.empty:
                continue
            ref, tgt = _pair_ends(pair)
            for ck, column in ((ref, "s_ref"), (tgt, "s_tgt")):
                if ck not in drawn:
                    drawn.add(ck)
                    top.plot(
                        g["index"],
                        g[column],
                        color=ck_colors[ck],
                        linestyle=ck_styles[ck],
                        linewidth=1.3,
                        label=f"σ of {ck}",
                    )
            rel = (g["s_tgt"] - g["s_ref"]) / g["s_ref"].where(g["s_ref"] != 0)
            bottom.plot(
                g["index"],
                rel,
                color=pair_colors[pair],
                linewidth=1.1,
                label=f"relative change {_pretty_pair(pair)}",
            )
        top.set_yscale("log")
        top.set_xlabel("singular value index (sorted, largest first)")
        top.set_ylabel("singular value σ (log scale)")
        bottom.axhline(0, color="0.3", linewidth=0.8)
        bottom.set_xlabel("singular value index (sorted, largest first)")
        bottom.set_ylabel("(σ_target − σ_ref) / σ_ref (%)")
        _percent(bottom.yaxis)
    _fig_legend(fig, axes, ncol=4)
    return fig, info


# ---------------------------------------------------------------------------------------------
# angles.pdf


def draw_angles(tables: dict, settings: dict) -> tuple[Figure, _Info]:
    """A: principal angle by relative singular index (binned); B: by layer; C: energy split of
    the update (rotation vs scaling share) by layer. Colour = checkpoint comparison."""
    info = _Info("angles")
    bins = int(settings.get("bins", 20))
    ang = _table(tables, "spectrum_angles").dropna(subset=["rel_index"])
    lay = _table(tables, "spectrum_layers").dropna(subset=["layer"])
    if lay.empty and len(ang):  # per-layer angles can be rebuilt from the per-index table
        lay = (
            ang.dropna(subset=["layer"])
            .groupby(["pair", "layer"], as_index=False)
            .agg(mean_angle_u=("angle_u", "mean"), mean_angle_v=("angle_v", "mean"))
        )
        lay["rotation_share"] = np.nan
        lay["scaling_share"] = np.nan
    pairs = list(dict.fromkeys(list(ang["pair"].astype(str)) + list(lay["pair"].astype(str))))
    colors = _cat_colors(pairs)
    fig = _figure(13.0, 4.3, settings)
    ax_a, ax_b, ax_c = fig.subplots(1, 3)

    title = "A  Rotation along the spectrum"
    if ang.empty:
        info.no_data(ax_a, title)
    else:
        info.panel(ax_a, title)
        edges = np.linspace(0.0, 1.0, bins + 1)
        centres = (edges[:-1] + edges[1:]) / 2
        for pair in pairs:
            g = ang[ang["pair"].astype(str) == pair].copy()
            if g.empty:
                continue
            g["bin"] = pd.cut(g["rel_index"].clip(0, 1), edges, include_lowest=True, labels=False)
            m = g.groupby("bin")[["angle_u", "angle_v"]].mean()
            x = centres[m.index.to_numpy(int)]
            ax_a.plot(
                x,
                m["angle_u"],
                color=colors[pair],
                linestyle="-",
                marker="o",
                ms=3,
                label=_pretty_pair(pair),
            )
            ax_a.plot(x, m["angle_v"], color=colors[pair], linestyle="--", marker="o", ms=3)
        ax_a.set_xlabel(f"relative singular index (index / rank, %, {bins} bins)")
        ax_a.set_ylabel("principal angle (degrees)")
        _percent(ax_a.xaxis)
        ax_a.set_ylim(bottom=0)

    title = "B  Rotation by layer"
    if lay.empty or lay[["mean_angle_u", "mean_angle_v"]].isna().all().all():
        info.no_data(ax_b, title)
    else:
        info.panel(ax_b, title)
        for pair in pairs:
            g = _mean_by(
                lay[lay["pair"].astype(str) == pair], "layer", ["mean_angle_u", "mean_angle_v"]
            )
            ax_b.plot(
                g["layer"],
                g["mean_angle_u"],
                color=colors[pair],
                marker="o",
                label=_pretty_pair(pair),
            )
            ax_b.plot(g["layer"], g["mean_angle_v"], color=colors[pair], linestyle="--", marker="o")
        ax_b.set_xlabel("decoder layer (mean over its matrices)")
        ax_b.set_ylabel("mean principal angle (degrees)")
        ax_b.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_b.set_ylim(bottom=0)

    title = "C  Update energy: rotation vs scaling"
    if lay.empty or lay[["rotation_share", "scaling_share"]].isna().all().all():
        info.no_data(ax_c, title)
    else:
        info.panel(ax_c, title)
        for pair in pairs:
            g = _mean_by(
                lay[lay["pair"].astype(str) == pair], "layer", ["rotation_share", "scaling_share"]
            )
            ax_c.plot(
                g["layer"],
                g["rotation_share"],
                color=colors[pair],
                marker="o",
                label=_pretty_pair(pair),
            )
            ax_c.plot(g["layer"], g["scaling_share"], color=colors[pair], linestyle=":", marker="s")
        ax_c.set_xlabel("decoder layer (mean over its matrices)")
        ax_c.set_ylabel("share of ‖ΔW‖² (%)")
        ax_c.xaxis.set_major_locator(MaxNLocator(integer=True))
        _percent(ax_c.yaxis)
        ax_c.set_ylim(0, 1.02)

    key = [
        Line2D([], [], color="0.2", linestyle="-", label="solid: U (left vectors) / rotation"),
        Line2D([], [], color="0.2", linestyle="--", label="dashed: V (right vectors)"),
        Line2D([], [], color="0.2", linestyle=":", marker="s", label="dotted: scaling"),
    ]
    _fig_legend(fig, [ax_a, ax_b, ax_c], extra=key if pairs else None, ncol=3)
    return fig, info


# ---------------------------------------------------------------------------------------------
# surgery.pdf


def draw_surgery(tables: dict, settings: dict) -> tuple[Figure, _Info]:
    """Success per split after each surgery (x = swept setting), one panel per method (variants
    such as head + tail UV merge as extra line styles), with the donor (dashed) and recipient
    (dotted) success as reference lines."""
    info = _Info("surgery")
    evals = _table(tables, "evals")
    rec = _table(tables, "recovery")
    rows = evals[_is(evals, "stage", "surgery") & evals["success"].notna()]
    if rows.empty:  # fall back to the success column of the recovery table (no intervals)
        rows = rec[rec["success"].notna()].assign(ci_low=np.nan, ci_high=np.nan)
    rows = _with_x(rows[rows["method"].notna()]) if len(rows) else rows
    methods = _ordered(rows["method"], METHOD_ORDER) if len(rows) else []
    if not methods:
        fig = _figure(5.0, 3.4, settings)
        info.no_data(fig.subplots(1, 1), "Weight surgery")
        return fig, info
    fig = _figure(4.2 * len(methods) + 0.4, 4.4, settings)
    axes = fig.subplots(1, len(methods), squeeze=False, sharey=True)[0]
    splits = _ordered(rows["split"], SPLIT_ORDER)
    key = [Line2D([], [], color="0.5", marker="o", label="after surgery (95% Wilson CI)")]
    key += [
        Line2D([], [], color="0.5", linestyle="--", label="donor"),
        Line2D([], [], color="0.5", linestyle=":", label="recipient"),
    ]
    for k, (ax, method) in enumerate(zip(axes, methods, strict=True)):
        name = METHOD_LABELS.get(method, method)
        info.panel(ax, f"{'ABCDEFGHIJKL'[k % 12]}  {name[0].upper()}{name[1:]}")
        sub = rows[_is(rows, "method", method)]
        info.use(sub)
        variants = sorted(sub["variant"].unique())
        for j, variant in enumerate(variants):
            linestyle, marker = VARIANT_STYLES[j % len(VARIANT_STYLES)]
            if len(variants) > 1 or variant:
                label = f"{name}: {_variant_label(method, variant)}"
                key.append(
                    Line2D([], [], color="0.5", linestyle=linestyle, marker=marker, label=label)
                )
            for i, split in enumerate(splits):
                g = sub[(sub["variant"] == variant) & _is(sub, "split", split)]
                if g.empty:
                    continue
                c = _mean_by(g, "x", ["success", "ci_low", "ci_high"])
                _band(
                    ax,
                    c["x"],
                    c["success"],
                    c["ci_low"],
                    c["ci_high"],
                    color=_split_color(split, i),
                    label=SPLIT_LABELS.get(split, split),
                    marker=marker,
                    linestyle=linestyle,
                    alpha=0.12,
                )
        refs = rec[_is(rec, "method", method)]
        for i, split in enumerate(splits):
            r = refs[_is(refs, "split", split)]
            for column, style in (("donor_success", "--"), ("recipient_success", ":")):
                value = r[column].mean()
                if pd.notna(value):
                    ax.axhline(value, color=_split_color(split, i), linestyle=style, linewidth=1)
        ax.set_xlabel(METHOD_XLABELS.get(method, "setting"))
        if method in ("uv", "reset"):
            _percent(ax.xaxis)
        _pad_single_x(ax, sub["x"])
        if k == 0:
            ax.set_ylabel("success (%)")
        _percent(ax.yaxis)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_tick_params(labelleft=True)
    _fig_legend(fig, axes, extra=key, ncol=5)
    return fig, info


# ---------------------------------------------------------------------------------------------
# coupling.pdf


def draw_coupling(tables: dict, settings: dict) -> tuple[Figure, _Info]:
    """SFT loss during RL (one panel per algorithm) against the base model's and the RL start
    checkpoint's SFT loss; reward during SFT that follows RL."""
    info = _Info("coupling")
    cp = _table(tables, "coupling").dropna(subset=["step", "value"])
    loss = cp[_is(cp, "kind", "sft_loss_during_rl")]
    reward = cp[_is(cp, "kind", "reward_during_sft")]
    algos = _ordered(loss["algorithm"], list(ALGO_COLORS)) if len(loss) else []
    fig = _figure(4.2 * (max(len(algos), 1) + 1) + 0.3, 4.2, settings)
    axes = fig.subplots(1, max(len(algos), 1) + 1, squeeze=False)[0]
    letters = iter("ABCDEFGHIJKL")
    epochs = sorted(loss["start_epoch"].dropna().unique())
    colors = _seq_colors(epochs)
    if not algos:
        info.no_data(axes[0], f"{next(letters)}  SFT loss during RL")
    for ax in axes[1 : len(algos)]:  # loss panels on one scale, to compare algorithms
        ax.sharey(axes[0])
    for ax, algo in zip(axes, algos, strict=False):
        info.panel(ax, f"{next(letters)}  SFT loss during RL, {_algo_label(algo)}")
        sub = loss[_is(loss, "algorithm", algo)]
        for e in epochs:
            g = sub[sub["start_epoch"] == e]
            if g.empty:
                continue
            m = _mean_by(g, "step", ["value"])
            ax.plot(
                m["step"], m["value"], color=colors[e], label=f"RL from SFT epoch {_fmt_epoch(e)}"
            )
            if g["ref_start"].notna().any():
                ax.axhline(g["ref_start"].mean(), color=colors[e], linestyle=":", linewidth=1)
        if sub["ref_base"].notna().any():
            ax.axhline(sub["ref_base"].mean(), color="0.1", linestyle="--", linewidth=1.1)
        ax.set_xlabel("RL update (step)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("SFT loss on SFT data (nats)")
    ax = axes[-1]
    title = f"{next(letters)}  Reward during SFT after RL"
    if reward.empty:
        info.no_data(ax, title)
    else:
        info.panel(ax, title)
        r_algos = _ordered(reward["algorithm"], list(ALGO_COLORS))
        r_colors = _algo_colors(r_algos)
        for algo in r_algos:
            sub = reward[_is(reward, "algorithm", algo)]
            for j, e in enumerate(sorted(sub["start_epoch"].dropna().unique())):
                m = _mean_by(sub[sub["start_epoch"] == e], "step", ["value"])
                ax.plot(
                    m["step"],
                    m["value"],
                    color=r_colors[algo],
                    linestyle=ALGO_LINESTYLES.get(str(algo).lower(), "-"),
                    marker=["o", "s", "^", "D"][j % 4],
                    markevery=[0],
                    ms=6,
                    label=f"{_algo_label(algo)} (RL from epoch {_fmt_epoch(e)}), then SFT",
                )
                ax.axhline(m["value"].iloc[0], color=r_colors[algo], linestyle=":", linewidth=0.9)
        ax.set_xlabel("SFT update after RL (step)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("mean reward on RL prompts (mean@1)")
    key = []
    if algos:
        key = [
            Line2D([], [], color="0.1", linestyle="--", label="SFT loss of the base model"),
            Line2D(
                [],
                [],
                color="0.5",
                linestyle=":",
                label="SFT loss of the RL start checkpoint (epoch colour)",
            ),
        ]
    if len(reward):
        key.append(
            Line2D(
                [],
                [],
                color="0.5",
                linestyle=":",
                marker="o",
                label="reward where RL ended (SFT step 0)",
            )
        )
    _fig_legend(fig, axes, extra=key, ncol=3)
    return fig, info


# ---------------------------------------------------------------------------------------------
# Writing: atomic PDF + sidecar, one plot_<name> per figure, the registry and the CLI.


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


def _plot(draw: Callable, tables: dict, out_pdf: Path, settings: dict | None) -> dict:
    fig, info = draw(tables, dict(settings or {}))
    save_pdf(fig, out_pdf)
    return info.as_dict()


def plot_recovery(tables: dict, out_pdf: Path, settings: dict | None = None) -> dict:
    return _plot(draw_recovery, tables, out_pdf, settings)


def plot_sft_dynamics(tables: dict, out_pdf: Path, settings: dict | None = None) -> dict:
    return _plot(draw_sft_dynamics, tables, out_pdf, settings)


def plot_rl_curves(tables: dict, out_pdf: Path, settings: dict | None = None) -> dict:
    return _plot(draw_rl_curves, tables, out_pdf, settings)


def plot_spectrum(tables: dict, out_pdf: Path, settings: dict | None = None) -> dict:
    return _plot(draw_spectrum, tables, out_pdf, settings)


def plot_angles(tables: dict, out_pdf: Path, settings: dict | None = None) -> dict:
    return _plot(draw_angles, tables, out_pdf, settings)


def plot_surgery(tables: dict, out_pdf: Path, settings: dict | None = None) -> dict:
    return _plot(draw_surgery, tables, out_pdf, settings)


def plot_coupling(tables: dict, out_pdf: Path, settings: dict | None = None) -> dict:
    return _plot(draw_coupling, tables, out_pdf, settings)


FIGURES: dict[str, Callable] = {
    "recovery": plot_recovery,
    "sft_dynamics": plot_sft_dynamics,
    "rl_curves": plot_rl_curves,
    "spectrum": plot_spectrum,
    "angles": plot_angles,
    "surgery": plot_surgery,
    "coupling": plot_coupling,
}


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
    names = FIGURE_TABLES[name]
    drawn = FIGURES[name](read_tables(tables_dir, names), out_pdf, settings)
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


if __name__ == "__main__":
    sys.exit(main())
