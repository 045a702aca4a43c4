"""coupling.pdf: SFT loss during RL, and reward during SFT that follows RL beside its no-RL
control (the same extra SFT from the SFT checkpoint)."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from sftrl.figures.style import (
    ALGO_COLORS,
    ALGO_LINESTYLES,
    NO_RL,
    FigureInfo,
    algo_colors,
    algo_label,
    contract_table,
    equals,
    figure_legend,
    fmt_epoch,
    mean_by,
    new_figure,
    ordered,
    seq_colors,
)

TABLES = ("coupling",)


def draw(tables: dict, settings: dict) -> tuple[Figure, FigureInfo]:
    """SFT loss during RL (one panel per algorithm) against the base model's and the RL start
    checkpoint's SFT loss; reward during SFT that follows RL."""
    info = FigureInfo("coupling")
    cp = contract_table(tables, "coupling").dropna(subset=["step", "value"])
    loss = cp[equals(cp, "kind", "sft_loss_during_rl")]
    reward = cp[equals(cp, "kind", "reward_during_sft")]
    algos = ordered(loss["algorithm"], list(ALGO_COLORS)) if len(loss) else []
    fig = new_figure(4.2 * (max(len(algos), 1) + 1) + 0.3, 4.2, settings)
    axes = fig.subplots(1, max(len(algos), 1) + 1, squeeze=False)[0]
    letters = iter("ABCDEFGHIJKL")
    epochs = sorted(loss["start_epoch"].dropna().unique())
    colors = seq_colors(epochs)
    if not algos:
        info.no_data(axes[0], f"{next(letters)}  SFT loss during RL")
    for ax in axes[1 : len(algos)]:  # loss panels on one scale, to compare algorithms
        ax.sharey(axes[0])
    for ax, algo in zip(axes, algos, strict=False):
        info.panel(ax, f"{next(letters)}  SFT loss during RL, {algo_label(algo)}")
        sub = loss[equals(loss, "algorithm", algo)]
        for e in epochs:
            g = sub[sub["start_epoch"] == e]
            if g.empty:
                continue
            m = mean_by(g, "step", ["value"])
            ax.plot(
                m["step"], m["value"], color=colors[e], label=f"RL from SFT epoch {fmt_epoch(e)}"
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
        r_algos = ordered(reward["algorithm"], list(ALGO_COLORS))
        r_colors = algo_colors(r_algos)
        for algo in r_algos:
            sub = reward[equals(reward, "algorithm", algo)]
            for j, e in enumerate(sorted(sub["start_epoch"].dropna().unique())):
                m = mean_by(sub[sub["start_epoch"] == e], "step", ["value"])
                ax.plot(
                    m["step"],
                    m["value"],
                    color=r_colors[algo],
                    linestyle=ALGO_LINESTYLES.get(str(algo).lower(), "-"),
                    marker=["o", "s", "^", "D"][j % 4],
                    markevery=[0],
                    ms=6,
                    label=(
                        f"{algo_label(algo)} (RL from epoch {fmt_epoch(e)}), then SFT"
                        if algo != NO_RL
                        else f"{algo_label(algo)}: more SFT from epoch {fmt_epoch(e)}"
                    ),
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
    figure_legend(fig, axes, extra=key, ncol=3)
    return fig, info
