"""angles.pdf: how far singular directions rotate, along the spectrum and by layer, and the
energy split of the update."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from sftrl.figures.style import (
    FigureInfo,
    cat_colors,
    contract_table,
    figure_legend,
    mean_by,
    new_figure,
    percent_axis,
    pretty_pair,
)

TABLES = ("spectrum_angles", "spectrum_layers")


def draw(tables: dict, settings: dict) -> tuple[Figure, FigureInfo]:
    """A: same-index angle (u_i of the reference vs u_i of the target, up to sign) by relative
    singular index, binned; B: mean top-k principal angle by layer; C: energy split of
    the update (rotation vs scaling share) by layer. Colour = checkpoint comparison."""
    info = FigureInfo("angles")
    bins = int(settings.get("bins", 20))
    ang = contract_table(tables, "spectrum_angles").dropna(subset=["rel_index"])
    lay = contract_table(tables, "spectrum_layers").dropna(subset=["layer"])
    rebuilt = lay.empty and len(ang) > 0
    if rebuilt:  # per-layer angles can be rebuilt from the per-index (same-index) angles
        lay = (
            ang.dropna(subset=["layer"])
            .groupby(["pair", "layer"], as_index=False)
            .agg(mean_angle_u=("angle_u", "mean"), mean_angle_v=("angle_v", "mean"))
        )
        lay["rotation_share"] = np.nan
        lay["scaling_share"] = np.nan
    pairs = list(dict.fromkeys(list(ang["pair"].astype(str)) + list(lay["pair"].astype(str))))
    colors = cat_colors(pairs)
    fig = new_figure(13.0, 4.3, settings)
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
                label=pretty_pair(pair),
            )
            ax_a.plot(x, m["angle_v"], color=colors[pair], linestyle="--", marker="o", ms=3)
            if "null_angle_u" in g and g["null_angle_u"].notna().any():
                null = g.groupby("bin")["null_angle_u"].mean()
                ax_a.plot(centres[null.index.to_numpy(int)], null, color=colors[pair], **NULL_STYLE)
        ax_a.set_xlabel(f"relative singular index (index / rank, %, {bins} bins)")
        ax_a.set_ylabel("same-index angle ∠(u_i, u′_i) (degrees)")
        percent_axis(ax_a.xaxis)
        ax_a.set_ylim(bottom=0)

    angle_label = (
        "mean same-index angle (degrees)" if rebuilt else "mean top-k principal angle (degrees)"
    )
    _by_layer(ax_b, lay, pairs, colors, info, "B  Rotation by layer", "mean_angle", angle_label)
    _by_layer(
        ax_c,
        lay,
        pairs,
        colors,
        info,
        "C  Update energy: rotation vs scaling",
        "share",
        "share of ‖ΔW‖², full bases (%)",
    )

    key = [
        Line2D([], [], color="0.2", linestyle="-", label="solid: U (left vectors) / rotation"),
        Line2D([], [], color="0.2", linestyle="--", label="dashed: V (right vectors)"),
        Line2D([], [], color="0.2", linestyle=":", marker="s", label="dotted: scaling"),
        Line2D([], [], color="0.2", **NULL_STYLE, label="faint: random update of equal norm"),
    ]
    figure_legend(fig, [ax_a, ax_b, ax_c], extra=key if pairs else None, ncol=3)
    return fig, info


# Per-layer panels: (solid column, second column, its line style and marker, the null's
# column: the same diagnostic for a random update of the same norm, sftrl.spectrum).
_LAYER_COLUMNS = {
    "mean_angle": ("mean_angle_u", "mean_angle_v", "--", "o", "null_mean_angle_u"),
    "share": ("rotation_share", "scaling_share", ":", "s", "null_share_rotation"),
}
NULL_STYLE = {"linestyle": (0, (1, 2)), "linewidth": 1.2, "alpha": 0.7}


def _by_layer(ax, lay, pairs, colors, info: FigureInfo, title: str, kind: str, ylabel: str):
    """Two per-layer columns per comparison (solid and a second style), mean over matrices."""
    first, second, style, marker, null = _LAYER_COLUMNS[kind]
    if lay.empty or lay[[first, second]].isna().all().all():
        info.no_data(ax, title)
        return
    info.panel(ax, title)
    for pair in pairs:
        g = mean_by(lay[lay["pair"].astype(str) == pair], "layer", [first, second])
        ax.plot(g["layer"], g[first], color=colors[pair], marker="o", label=pretty_pair(pair))
        ax.plot(g["layer"], g[second], color=colors[pair], linestyle=style, marker=marker)
        sub = lay[lay["pair"].astype(str) == pair]
        if null in sub and sub[null].notna().any():
            n = mean_by(sub, "layer", [null])
            ax.plot(n["layer"], n[null], color=colors[pair], **NULL_STYLE)
    ax.set_xlabel("decoder layer (mean over its matrices)")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if kind == "share":
        percent_axis(ax.yaxis)
        ax.set_ylim(0, 1.02)
    else:
        ax.set_ylim(bottom=0)
