"""recovery.pdf, the headline: success over SFT epochs with RL from each epoch as arrows,
and the recovery of lost success by each surgery method."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sftrl.figures.style import (
    ALGO_COLORS,
    SPLIT_LABELS,
    VARIANT_STYLES,
    FigureInfo,
    algo_colors,
    algo_label,
    band,
    contract_table,
    epoch0,
    equals,
    errorbars,
    figure_legend,
    mean_by,
    method_label,
    new_figure,
    ordered,
    pad_single_x,
    percent_axis,
    surgery_method,
    surgery_methods,
    variant_label,
    with_x,
)

TABLES = ("evals", "recovery", "pooled")


def _final_rl(rl: pd.DataFrame) -> pd.DataFrame:
    """Each RL artifact's final checkpoint: the ``final`` rows, else its last step."""
    parts = []
    for _, g in rl.groupby("artifact", sort=True):
        final = g[equals(g, "checkpoint", "final")]
        parts.append(final if len(final) else g[g["rl_step"] == g["rl_step"].max()])
    return pd.concat(parts) if parts else rl.iloc[0:0]


def _across_seeds(rl: pd.DataFrame, pooled: pd.DataFrame, split: str) -> pd.DataFrame:
    """RL finals as one point per (algorithm, start epoch): the across-replicate mean with its
    seeds-then-hands interval (the pooled table), where there is more than one replicate."""
    rows = pooled[equals(pooled, "kind", "rl") & equals(pooled, "split", split)]
    if rows.empty or rows["replicates"].max() < 2:
        return rl
    return pd.DataFrame(
        {
            "algorithm": rows["treatment"],
            "epoch": rows["start_epoch"],
            "success": rows["after"],
            "ci_low": rows["after_low"],
            "ci_high": rows["after_high"],
            "replicates": rows["replicates"],
        }
    )


def _panel_rl_from_sft(
    ax, evals: pd.DataFrame, pooled: pd.DataFrame, split: str, info: FigureInfo, title: str
) -> None:
    rows = epoch0(evals[equals(evals, "split", split)])
    sft = rows[rows["stage"].isin(["base", "sft"]) & rows["epoch"].notna()]
    rl = _final_rl(rows[equals(rows, "stage", "rl") & rows["epoch"].notna()])
    rl = rl[rl["success"].notna()]
    per_seed = rl
    rl = _across_seeds(rl, pooled, split)
    seeds = int(rl["replicates"].max()) if "replicates" in rl else 1
    if sft.empty and rl.empty:
        info.no_data(ax, title)
        return
    info.panel(ax, title)
    name = SPLIT_LABELS.get(split, split)
    curve = mean_by(sft, "epoch", ["success", "ci_low", "ci_high"])
    if len(curve):
        info.use(sft)
        band(
            ax,
            curve["epoch"],
            curve["success"],
            curve["ci_low"],
            curve["ci_high"],
            color="0.15",
            label=f"SFT checkpoints ({name}, 95% Wilson CI)",
        )
        base = curve[curve["epoch"] == 0]
        if equals(sft, "stage", "base").any() and len(base):
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
    algos = ordered(rl["algorithm"], list(ALGO_COLORS))
    colors = algo_colors(algos)
    epochs = np.sort(curve["epoch"].unique()) if len(curve) else np.array([0.0, 1.0])
    spacing = float(np.min(np.diff(epochs))) if len(epochs) > 1 else 1.0
    for i, algo in enumerate(algos):
        sub = rl[equals(rl, "algorithm", algo)]
        info.use(sub)
        offset = (i - (len(algos) - 1) / 2) * 0.2 * spacing
        x = sub["epoch"].to_numpy(float) + offset
        if seeds > 1:  # every replicate's own point, faint, beside the mean
            own = per_seed[equals(per_seed, "algorithm", algo)]
            info.use(own)
            ax.plot(
                own["epoch"].to_numpy(float) + offset + 0.04 * spacing,
                own["success"],
                linestyle="none",
                marker=".",
                ms=4,
                color=matplotlib.colors.to_rgba(colors[algo], 0.45),
                zorder=2,
            )
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
        errorbars(
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
            label=f"{algo_label(algo)} from SFT epoch (arrow: SFT → RL final"
            + (
                f"; mean of {seeds} seeds, 95% over seeds and hands; dots: seeds)"
                if seeds > 1
                else ")"
            ),
        )
    ax.set_xlabel("SFT epoch (0 = base model; RL drawn at its start epoch)")
    ax.set_ylabel(f"{name} success (%)")
    percent_axis(ax.yaxis)
    ax.set_ylim(bottom=0)


def _panel_recovery(
    ax,
    rec: pd.DataFrame,
    methods: list[str],
    info: FigureInfo,
    title: str,
    xlabel: str,
    percent_x: bool,
    split_name: str,
) -> None:
    rec = with_x(rec[rec["method"].isin(methods)])
    rec = rec[rec["recovery"].notna()]
    if rec.empty:
        info.no_data(ax, title)
        return
    info.panel(ax, title)
    info.use(rec)
    values = []
    for method in ordered(rec["method"], methods):
        sub = rec[equals(rec, "method", method)]
        variants = sorted(sub["variant"].unique())
        for j, variant in enumerate(variants):
            g = mean_by(
                sub[sub["variant"] == variant], "x", ["recovery", "recovery_low", "recovery_high"]
            )
            linestyle, marker = VARIANT_STYLES[j % len(VARIANT_STYLES)]
            label = method_label(method)
            if len(variants) > 1 or variant:
                label += f": {variant_label(method, variant)}"
            errorbars(
                ax,
                g["x"],
                g["recovery"],
                g["recovery_low"],
                g["recovery_high"],
                clip=(-1.0, 2.0),
                color=surgery_method(method).color if surgery_method(method) else "0.3",
                linestyle=linestyle,
                marker=marker,
                label=label,
            )
            values.extend(g["recovery"].tolist())
    pad_single_x(ax, rec["x"])
    ax.axhline(0, color="0.35", linestyle=":", linewidth=1, label="0% = recipient (no recovery)")
    ax.axhline(1, color="0.35", linestyle="--", linewidth=1, label="100% = donor (fully recovered)")
    low = min(-0.1, np.nanmin(values) - 0.1)
    high = max(1.15, np.nanmax(values) + 0.1)
    ax.set_ylim(max(low, -1.0), min(high, 2.0))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"lost {split_name} success recovered (%)")
    percent_axis(ax.yaxis)
    if percent_x:
        percent_axis(ax.xaxis)


def draw(tables: dict, settings: dict) -> tuple[Figure, FigureInfo]:
    """A: success over SFT epochs with RL from each epoch as arrows; then one recovery panel
    per surgery panel of the registry (one x quantity each: never two on one axis)."""
    split = settings.get("split", "ood")
    info = FigureInfo("recovery")
    panels: dict[str, list] = {}
    for method in surgery_methods().values():
        panels.setdefault(method.panel, []).append(method)
    fig = new_figure(4.6 + 3.9 * len(panels), 4.4, settings)
    axes = fig.subplots(1, 1 + len(panels), width_ratios=[1.35] + [1] * len(panels))
    evals = contract_table(tables, "evals")
    rec = contract_table(tables, "recovery")
    rec = rec[equals(rec, "split", split)]
    pooled = contract_table(tables, "pooled")
    name = SPLIT_LABELS.get(split, split)
    _panel_rl_from_sft(axes[0], evals, pooled, split, info, f"A  {name} success: SFT, then RL")
    for ax, letter, methods in zip(axes[1:], "BCDEFG", panels.values(), strict=False):
        _panel_recovery(
            ax,
            rec,
            [m.name for m in methods],
            info,
            f"{letter}  Recovery by {methods[0].label}",
            methods[0].xlabel,
            percent_x=methods[0].x_percent,
            split_name=name,
        )
    figure_legend(fig, axes, ncol=3)
    return fig, info
