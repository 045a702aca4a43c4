"""surgery.pdf: success per split after each surgery, one panel per method."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from sftrl.figures.style import (
    SPLIT_LABELS,
    SPLIT_ORDER,
    VARIANT_STYLES,
    FigureInfo,
    band,
    contract_table,
    equals,
    figure_legend,
    mean_by,
    method_label,
    new_figure,
    ordered,
    pad_single_x,
    percent_axis,
    split_color,
    surgery_method,
    surgery_methods,
    variant_label,
    with_x,
)

TABLES = ("evals", "recovery")


def draw(tables: dict, settings: dict) -> tuple[Figure, FigureInfo]:
    """Success per split after each surgery (x = swept setting), one panel per method (variants
    such as head + tail UV merge as extra line styles), with the donor (dashed) and recipient
    (dotted) success as reference lines."""
    info = FigureInfo("surgery")
    evals = contract_table(tables, "evals")
    rec = contract_table(tables, "recovery")
    rows = evals[equals(evals, "stage", "surgery") & evals["success"].notna()]
    if rows.empty:  # fall back to the success column of the recovery table (no intervals)
        rows = rec[rec["success"].notna()].assign(ci_low=np.nan, ci_high=np.nan)
    rows = with_x(rows[rows["method"].notna()]) if len(rows) else rows
    methods = ordered(rows["method"], list(surgery_methods())) if len(rows) else []
    if not methods:
        fig = new_figure(5.0, 3.4, settings)
        info.no_data(fig.subplots(1, 1), "Weight surgery")
        return fig, info
    fig = new_figure(4.2 * len(methods) + 0.4, 4.4, settings)
    axes = fig.subplots(1, len(methods), squeeze=False, sharey=True)[0]
    splits = ordered(rows["split"], SPLIT_ORDER)
    key = [Line2D([], [], color="0.5", marker="o", label="after surgery (95% Wilson CI)")]
    key += [
        Line2D([], [], color="0.5", linestyle="--", label="donor"),
        Line2D([], [], color="0.5", linestyle=":", label="recipient"),
    ]
    for k, (ax, method) in enumerate(zip(axes, methods, strict=True)):
        name = method_label(method)
        declared = surgery_method(method)
        info.panel(ax, f"{'ABCDEFGHIJKL'[k % 12]}  {name[0].upper()}{name[1:]}")
        sub = rows[equals(rows, "method", method)]
        info.use(sub)
        variants = sorted(sub["variant"].unique())
        for j, variant in enumerate(variants):
            linestyle, marker = VARIANT_STYLES[j % len(VARIANT_STYLES)]
            if len(variants) > 1 or variant:
                label = f"{name}: {variant_label(method, variant)}"
                key.append(
                    Line2D([], [], color="0.5", linestyle=linestyle, marker=marker, label=label)
                )
            for i, split in enumerate(splits):
                g = sub[(sub["variant"] == variant) & equals(sub, "split", split)]
                if g.empty:
                    continue
                c = mean_by(g, "x", ["success", "ci_low", "ci_high"])
                band(
                    ax,
                    c["x"],
                    c["success"],
                    c["ci_low"],
                    c["ci_high"],
                    color=split_color(split, i),
                    label=SPLIT_LABELS.get(split, split),
                    marker=marker,
                    linestyle=linestyle,
                    alpha=0.12,
                )
        refs = rec[equals(rec, "method", method)]
        for i, split in enumerate(splits):
            r = refs[equals(refs, "split", split)]
            for column, style in (("donor_success", "--"), ("recipient_success", ":")):
                value = r[column].mean()
                if pd.notna(value):
                    ax.axhline(value, color=split_color(split, i), linestyle=style, linewidth=1)
        ax.set_xlabel(declared.xlabel if declared else "setting")
        if declared and declared.x_percent:
            percent_axis(ax.xaxis)
        pad_single_x(ax, sub["x"])
        if k == 0:
            ax.set_ylabel("success (%)")
        percent_axis(ax.yaxis)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_tick_params(labelleft=True)
    figure_legend(fig, axes, extra=key, ncol=5)
    return fig, info
