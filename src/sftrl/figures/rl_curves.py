"""rl_curves.pdf: reward, success, KL over RL updates per algorithm and start epoch."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sftrl.figures.style import (
    ALGO_COLORS,
    ALGO_LINESTYLES,
    METRIC_LABELS,
    METRIC_TITLES,
    PERCENT_METRICS,
    FigureInfo,
    algo_label,
    contract_table,
    equals,
    figure_legend,
    fmt_epoch,
    mean_by,
    new_figure,
    ordered,
    percent_axis,
    seq_colors,
)

TABLES = ("rl_curves",)


def draw(tables: dict, settings: dict) -> tuple[Figure, FigureInfo]:
    """Reward, success, KL (settings ``metrics``) over RL updates: rows = metrics, columns =
    algorithms, colour = SFT epoch RL starts from (mean over seeds)."""
    info = FigureInfo("rl_curves")
    metrics = list(settings.get("metrics", ["reward", "success", "kl"]))
    rl = contract_table(tables, "rl_curves")
    rl = rl[rl["step"].notna()]
    algos = ordered(rl["algorithm"], list(ALGO_COLORS)) if len(rl) else []
    if not algos:
        fig = new_figure(3.6 * len(metrics) + 0.5, 3.2, settings)
        for ax, metric in zip(np.ravel(fig.subplots(1, len(metrics))), metrics, strict=True):
            info.no_data(ax, METRIC_TITLES.get(metric, metric))
        return fig, info
    epochs = sorted(rl["start_epoch"].dropna().unique())
    colors = seq_colors(epochs)
    n_seeds = rl["seed"].nunique()
    fig = new_figure(3.7 * len(algos) + 0.6, 2.5 * len(metrics) + 1.0, settings)
    axes = fig.subplots(len(metrics), len(algos), sharex="col", sharey="row", squeeze=False)
    letters = iter("ABCDEFGHIJKLMNOPQRSTUVWXYZ" * 4)
    for r, metric in enumerate(metrics):
        name = METRIC_TITLES.get(metric, metric)
        for c, algo in enumerate(algos):
            ax = axes[r, c]
            title = f"{next(letters)}  {name}, {algo_label(algo)}"
            sub = rl[equals(rl, "algorithm", algo)]
            if metric not in sub.columns or sub[metric].isna().all():
                info.no_data(ax, title, f"no {name.lower()} logged")
                continue
            info.panel(ax, title)
            for e in epochs:
                g = sub[sub["start_epoch"] == e]
                if g[metric].notna().any():
                    m = mean_by(g, "step", [metric]).dropna()
                    ax.plot(
                        m["step"],
                        m[metric],
                        color=colors[e],
                        linestyle=ALGO_LINESTYLES.get(str(algo).lower(), "-"),
                        label=f"SFT epoch {fmt_epoch(e)}",
                    )
            if metric in PERCENT_METRICS:
                percent_axis(ax.yaxis)
            if c == 0:
                ax.set_ylabel(METRIC_LABELS.get(metric, metric))
            if r == len(metrics) - 1:
                ax.set_xlabel("RL update (step)")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    title = "RL starts from" + (f" (mean over {n_seeds} seeds)" if n_seeds > 1 else "")
    figure_legend(fig, axes, ncol=8, title=title)
    return fig, info
