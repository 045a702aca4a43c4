"""sft_dynamics.pdf: success per split over SFT epochs, and the SFT loss."""

from __future__ import annotations

from matplotlib.figure import Figure

from sftrl.figures.style import (
    SPLIT_LABELS,
    SPLIT_ORDER,
    FigureInfo,
    band,
    contract_table,
    epoch0,
    equals,
    figure_legend,
    mean_by,
    new_figure,
    ordered,
    percent_axis,
    split_color,
)

TABLES = ("evals", "sft_curve", "sft_heldout")


def draw(tables: dict, settings: dict) -> tuple[Figure, FigureInfo]:
    """A: success per split over SFT epochs; B: SFT loss (train per step, held-out per epoch)."""
    info = FigureInfo("sft_dynamics")
    fig = new_figure(10.5, 4.0, settings)
    ax_a, ax_b = fig.subplots(1, 2)
    evals = epoch0(contract_table(tables, "evals"))
    rows = evals[evals["stage"].isin(["base", "sft"]) & evals["epoch"].notna()]
    title_a = "A  Success by split over SFT"
    if rows.empty:
        info.no_data(ax_a, title_a)
    else:
        info.panel(ax_a, title_a)
        info.use(rows)
        for i, split in enumerate(ordered(rows["split"], SPLIT_ORDER)):
            c = mean_by(
                rows[equals(rows, "split", split)], "epoch", ["success", "ci_low", "ci_high"]
            )
            band(
                ax_a,
                c["epoch"],
                c["success"],
                c["ci_low"],
                c["ci_high"],
                color=split_color(split, i),
                label=SPLIT_LABELS.get(split, split),
            )
        ax_a.set_xlabel("SFT epoch (0 = base model)")
        ax_a.set_ylabel("success (%), 95% Wilson CI")
        percent_axis(ax_a.yaxis)
        ax_a.set_ylim(bottom=0)

    curve = contract_table(tables, "sft_curve").dropna(subset=["epoch", "train_loss"])
    held = contract_table(tables, "sft_heldout").dropna(subset=["epoch", "heldout_loss"])
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
            h = mean_by(held, "epoch", ["heldout_loss"])
            ax_b.plot(
                h["epoch"],
                h["heldout_loss"],
                color="0.1",
                marker="o",
                label="held-out loss (per epoch)",
            )
        ax_b.set_xlabel("SFT epoch")
        ax_b.set_ylabel("cross-entropy on answer tokens (nats)")
    figure_legend(fig, [ax_a, ax_b], ncol=5)
    return fig, info
