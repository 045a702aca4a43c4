"""spectrum.pdf: sorted singular values of a few matrices and their relative change."""

from __future__ import annotations

import re

import pandas as pd
from matplotlib.figure import Figure

from sftrl.figures.style import (
    FigureInfo,
    cat_colors,
    contract_table,
    figure_legend,
    new_figure,
    pair_ends,
    percent_axis,
    pretty_pair,
    seq_colors,
)

TABLES = ("spectrum_values",)


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


def draw(tables: dict, settings: dict) -> tuple[Figure, FigureInfo]:
    """Sorted singular values of a few matrices for every checkpoint (log y), and their
    relative change per comparison: the values stay put."""
    info = FigureInfo("spectrum")
    sv = contract_table(tables, "spectrum_values").dropna(subset=["index", "s_ref", "s_tgt"])
    chosen = _choose_matrices(sv, settings.get("matrices")) if len(sv) else []
    if not chosen:
        fig = new_figure(8.0, 3.4, settings)
        ax_a, ax_b = fig.subplots(1, 2)
        info.no_data(ax_a, "A  Singular values")
        info.no_data(ax_b, "B  Relative change of singular values")
        return fig, info
    pairs = list(dict.fromkeys(sv["pair"].astype(str)))
    checkpoints = list(dict.fromkeys(n for p in pairs for n in pair_ends(p)))
    ck_colors = seq_colors(checkpoints)
    ck_styles = {n: ["-", "--", "-.", ":"][i % 4] for i, n in enumerate(checkpoints)}
    pair_colors = cat_colors(pairs)
    n = len(chosen)
    fig = new_figure(max(4.2 * n, 6.0) + 0.4, 6.6, settings)
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
            ref, tgt = pair_ends(pair)
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
                label=f"relative change {pretty_pair(pair)}",
            )
        top.set_yscale("log")
        top.set_xlabel("singular value index (sorted, largest first)")
        top.set_ylabel("singular value σ (log scale)")
        bottom.axhline(0, color="0.3", linewidth=0.8)
        bottom.set_xlabel("singular value index (sorted, largest first)")
        bottom.set_ylabel("(σ_target − σ_ref) / σ_ref (%)")
        percent_axis(bottom.yaxis)
    figure_legend(fig, axes, ncol=4)
    return fig, info
