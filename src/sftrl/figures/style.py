"""What every figure shares: the table contracts, the theme, the panel helpers.

Success rates are fractions in [0, 1] in the tables and are shown as percentages. This module
must stay light: no torch, no transformers. Surgery methods' labels, colours and swept settings
come from the surgery registry (``sftrl.surgery.registry``).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.ticker import Formatter  # noqa: E402

from sftrl.data import EVAL_SPLITS  # noqa: E402
from sftrl.surgery.registry import Method  # noqa: E402
from sftrl.surgery.registry import methods as surgery_methods  # noqa: E402
from sftrl.tables import NO_RL  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Table contracts: the columns the figures read. A table lacking a REQUIRED column is drawn as
# "no data" (with a warning); a missing optional column is read as all-NaN.

TABLE_COLUMNS: dict[str, list[str]] = {
    "evals": [
        "stage", "artifact", "replicate", "checkpoint", "epoch", "algorithm", "rl_step",
        "method", "setting", "fraction", "split", "success", "ci_low", "ci_high",
    ],
    "recovery": [
        "replicate", "method", "setting", "fraction", "split", "success", "donor_success",
        "recipient_success", "recovery", "recovery_low", "recovery_high",
    ],
    "sft_curve": ["step", "epoch", "train_loss"],
    "sft_heldout": ["epoch", "heldout_loss"],
    "rl_curves": ["algorithm", "start_epoch", "seed", "step"],
    "coupling": ["kind", "algorithm", "start_epoch", "step", "value", "ref_base", "ref_start"],
    "spectrum_values": ["pair", "matrix", "layer", "module", "index", "s_ref", "s_tgt"],
    "spectrum_angles": ["pair", "matrix", "layer", "module", "rel_index", "angle_u", "angle_v"],
    "pooled": [
        "kind", "treatment", "start_epoch", "split", "replicates", "after", "after_low",
        "after_high", "recipient", "donor", "diff", "diff_low", "diff_high", "recovery",
        "recovery_low", "recovery_high",
    ],
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
    "pooled": ["kind", "treatment", "split", "after"],
}

NUMERIC = {
    "epoch",
    "seed",
    "replicate",
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


# ---------------------------------------------------------------------------------------------
# Theme: one palette for algorithms, one for splits, used by every figure.

ALGO_COLORS = {"ppo": "#0173b2", "grpo": "#d55e00", "rloo": "#029e73", NO_RL: "#7f7f7f"}
ALGO_LINESTYLES = {"ppo": "-", "grpo": "--", "rloo": "-.", NO_RL: ":"}
EXTRA_COLORS = ["#cc78bc", "#ca9161", "#949494", "#56b4e9", "#ece133", "#fbafe4"]
SPLIT_COLORS = {"id_seen": "#cc78bc", "id_unseen": "#ca9161", "ood": "#222222"}
SPLIT_LABELS = {"id_seen": "ID seen", "id_unseen": "ID unseen", "ood": "OOD"}
SPLIT_ORDER = list(EVAL_SPLITS)
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


def ordered(values: Iterable, order: list[str]) -> list:
    """Unique non-null values, those in ``order`` first (in that order), then the rest sorted."""
    present = {v for v in values if isinstance(v, str) or not pd.isna(v)}
    known = [v for v in order if v in present]
    return known + sorted((v for v in present if v not in order), key=str)


def algo_colors(algos: list) -> dict:
    extra = iter(EXTRA_COLORS * 4)
    return {a: ALGO_COLORS.get(str(a).lower()) or next(extra) for a in algos}


def algo_label(algo) -> str:
    return "no RL (control)" if algo == NO_RL else str(algo).upper()


def split_color(split, i: int = 0) -> str:
    return SPLIT_COLORS.get(split, EXTRA_COLORS[i % len(EXTRA_COLORS)])


def seq_colors(values: list) -> dict:
    """Sequential colours (viridis, without its pale yellow end) for ordered values."""
    cmap = matplotlib.colormaps["viridis"]
    n = len(values)
    return {v: cmap(0.85 * i / max(n - 1, 1)) for i, v in enumerate(values)}


def cat_colors(values: list) -> dict:
    palette = sns.color_palette("colorblind", max(len(values), 1))
    if len(values) > len(palette):
        palette = sns.color_palette("husl", len(values))
    return dict(zip(values, palette, strict=False))


def fmt_epoch(e) -> str:
    return f"{float(e):g}"


# ---------------------------------------------------------------------------------------------
# Small helpers shared by the figures.


class FigureInfo:
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


def contract_table(tables: dict, name: str) -> pd.DataFrame:
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


def equals(df: pd.DataFrame, col: str, value) -> pd.Series:
    """Boolean mask ``df[col] == value`` that works on any dtype (string or all-NaN)."""
    return df[col].astype("object") == value


CONTEXT_SCALE = {"paper": 0.8, "notebook": 1.0, "talk": 1.5, "poster": 2.0}  # seaborn's


def new_figure(width: float, height: float, settings: dict) -> Figure:
    """A constrained-layout figure in the shared theme; sizes are for the default theme and
    grow with larger fonts (context, font_scale) so that text keeps its room."""
    theme = THEME | dict(settings.get("theme") or {})
    apply_theme(theme)
    font = CONTEXT_SCALE.get(theme["context"], 1.0) * float(theme["font_scale"])
    grow = max(1.0, font / (CONTEXT_SCALE["paper"] * THEME["font_scale"]))
    return Figure(figsize=(width * grow, height * grow), layout="constrained")


class PercentTicks(Formatter):
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


def percent_axis(axis) -> None:
    axis.set_major_formatter(PercentTicks())


def pad_single_x(ax, xs, pad: float = 0.1) -> None:
    """A panel whose points all sit at one x gets a sensible x range around it."""
    xs = np.unique(np.asarray(xs, float)[np.isfinite(np.asarray(xs, float))])
    if len(xs) == 1:
        ax.set_xlim(xs[0] - pad, xs[0] + pad)


def band(ax, x, y, lo, hi, color, label=None, marker="o", linestyle="-", alpha=0.18):
    """A line with markers and a shaded interval; NaN bounds fall back to the point."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    lo = np.where(np.isfinite(np.asarray(lo, float)), lo, y)
    hi = np.where(np.isfinite(np.asarray(hi, float)), hi, y)
    if len(x) > 1:
        ax.fill_between(x, lo, hi, color=color, alpha=alpha, linewidth=0)
    else:
        ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="none", ecolor=color, capsize=2)
    ax.plot(x, y, color=color, marker=marker, linestyle=linestyle, label=label)


def errorbars(ax, x, y, lo, hi, clip=(-math.inf, math.inf), **kwargs):
    """Error bars from absolute bounds; non-finite bounds are clipped to ``clip``."""
    y = np.asarray(y, float)
    lo = np.clip(np.nan_to_num(np.asarray(lo, float), nan=np.nan, neginf=clip[0]), *clip)
    hi = np.clip(np.nan_to_num(np.asarray(hi, float), nan=np.nan, posinf=clip[1]), *clip)
    lo = np.where(np.isnan(lo), y, lo)
    hi = np.where(np.isnan(hi), y, hi)
    yerr = [np.maximum(y - lo, 0), np.maximum(hi - y, 0)]
    return ax.errorbar(x, y, yerr=yerr, capsize=2.5, **kwargs)


def figure_legend(fig: Figure, axes, extra: list | None = None, ncol: int = 4, title=None):
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
            ncol=legend_columns(fig, labels, ncol),
            title=title,
        )


def legend_columns(fig: Figure, labels: list[str], most: int) -> int:
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


def settings_parts(setting) -> list[str]:
    if not isinstance(setting, str):
        return []
    return [p for p in re.split(r"[,;\s]+", setting.strip()) if p]


def variant_of(setting, key: str) -> str:
    """The parts of a surgery setting other than the swept one, e.g. ``tail=0.1``; a part whose
    value equals the swept value is written ``tail=same`` (``top=0.2,tail=0.2`` is one head +
    tail sweep, not one variant per fraction)."""
    parts = settings_parts(setting)
    swept = [p.split("=", 1)[1] for p in parts if p.startswith(f"{key}=")]
    out = []
    for part in parts:
        if part.startswith(f"{key}="):
            continue
        name, _, value = part.partition("=")
        out.append(f"{name}=same" if swept and value == swept[0] else part)
    return ",".join(out)


def variant_label(method: str, variant: str) -> str:
    if not variant:
        return "top only" if method == "uv" else "default"
    return "head + tail" if variant == "tail=same" else variant


def setting_value(setting, key: str) -> float:
    for part in settings_parts(setting):
        if part.startswith(f"{key}="):
            try:
                return float(part.split("=", 1)[1])
            except ValueError:
                return math.nan
    return math.nan


def with_x(df: pd.DataFrame) -> pd.DataFrame:
    """Surgery rows with ``x`` (the ``fraction``, else the swept setting) and ``variant``."""
    df = df.copy()
    keys = df["method"].map(lambda m: surgery_method(m).swept if surgery_method(m) else "")
    parsed = [setting_value(s, k) for s, k in zip(df["setting"], keys, strict=True)]
    df["x"] = df["fraction"].where(df["fraction"].notna(), pd.Series(parsed, index=df.index))
    df["variant"] = [variant_of(s, k) for s, k in zip(df["setting"], keys, strict=True)]
    return df[df["x"].notna()]


def epoch0(df: pd.DataFrame) -> pd.DataFrame:
    """Base-model rows get epoch 0 (the start of SFT)."""
    df = df.copy()
    df.loc[equals(df, "stage", "base"), "epoch"] = 0.0
    return df


def mean_by(df: pd.DataFrame, key: str, cols: list[str]) -> pd.DataFrame:
    """Mean of ``cols`` per ``key`` (several seeds or artifacts at one x), sorted by key."""
    return df.groupby(key, as_index=False)[cols].mean().sort_values(key)


def surgery_method(name) -> Method | None:
    """The registered surgery method of that name (None for an unknown one)."""
    return surgery_methods().get(str(name))


def method_label(name) -> str:
    method = surgery_method(name)
    return method.label if method else str(name)


def pretty_pair(pair) -> str:
    return str(pair).replace("->", "→")


def pair_ends(pair: str) -> tuple[str, str]:
    parts = [p.strip() for p in str(pair).split("->")]
    return (parts[0], parts[1]) if len(parts) == 2 else (f"{pair} (ref)", f"{pair} (target)")
