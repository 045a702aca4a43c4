"""Figures from synthetic metric tables: every figure builds, is a valid one-page vector PDF,
holds its panels, names its artifacts in a sidecar, survives empty tables, and is readable
(no overlapping text, legends off the data).

The tables are generated here with a seeded rng (``make_tables``). To look at the figures::

    .venv/bin/python tests/test_figures.py /tmp/figs    # writes tables/ and one PDF per figure
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text

from sftrl import figures
from sftrl.figures import build
from sftrl.stats import wilson_interval

N_EVAL = 234
SFT_EPOCHS = [1, 2, 3, 4, 6, 8]
RL_STARTS = [2, 4, 8]
ALGOS = ["ppo", "grpo"]
PAIRS = ["base -> sft epoch-2", "sft epoch-2 -> sft epoch-8"]
MODULES = ["self_attn.q_proj", "self_attn.k_proj", "mlp.down_proj"]
N_LAYERS = 4
RANK = 48


# ---------------------------------------------------------------------------------------------
# Synthetic tables (shapes as the metrics stage writes them; numbers shaped like the paper's).


def _eval_rows(rng, base: dict, rates: dict) -> list[dict]:
    rows = []
    for split, rate in rates.items():
        k = int(rng.binomial(N_EVAL, float(np.clip(rate, 0, 1))))
        low, high = wilson_interval(k, N_EVAL)
        rows.append(
            base
            | {
                "split": split,
                "n": N_EVAL,
                "success": k / N_EVAL,
                "ci_low": low,
                "ci_high": high,
                "mean_reward": rng.normal(),
                "number_acc": rng.random(),
                "says_ten": rng.random(),
            }
        )
    return rows


def _ood_after_sft(epoch: float) -> float:
    return 0.04 + 0.14 * np.exp(-((epoch - 2.0) ** 2) / 2.0) + 0.05 * (epoch > 2)


def _evals(rng) -> pd.DataFrame:
    empty = {
        "epoch": np.nan,
        "algorithm": None,
        "seed": 0,
        "rl_step": np.nan,
        "method": None,
        "setting": None,
        "fraction": np.nan,
    }
    rows = _eval_rows(
        rng,
        empty | {"stage": "base", "artifact": "base0", "label": "base", "checkpoint": "model"},
        {"id_seen": 0.05, "id_unseen": 0.04, "ood": 0.03},
    )
    for e in SFT_EPOCHS:
        meta = {"stage": "sft", "artifact": f"sft-e{e}", "label": f"sft epoch-{e}"}
        rates = {"id_seen": 0.3 + 0.08 * e, "id_unseen": 0.25 + 0.07 * e, "ood": _ood_after_sft(e)}
        rows += _eval_rows(rng, empty | meta | {"checkpoint": f"epoch-{e}", "epoch": e}, rates)
    for algo in ALGOS:
        for e in RL_STARTS:
            for step in (10, 20, 30):
                meta = {
                    "stage": "rl",
                    "artifact": f"rl-{algo}-e{e}",
                    "label": f"{algo} from epoch-{e}",
                    "checkpoint": "final" if step == 30 else f"step-{step}",
                    "epoch": e,
                    "algorithm": algo,
                    "rl_step": step,
                }
                gain = (0.12 if algo == "ppo" else 0.09) * step / 30 / (1 + 0.3 * e)
                rates = {"id_seen": 0.8, "id_unseen": 0.7, "ood": _ood_after_sft(e) + gain}
                rows += _eval_rows(rng, empty | meta, rates)
    for method, setting, frac in _surgery_settings():
        meta = {
            "stage": "surgery",
            "artifact": f"surg-{method}-{setting}",
            "label": f"{method} {setting}",
            "checkpoint": "model",
            "method": method,
            "setting": setting,
            "fraction": frac,
        }
        rates = {"id_seen": 0.9 - 0.2 * frac, "id_unseen": 0.85 - 0.2 * frac, "ood": 0.1 + frac / 8}
        rows += _eval_rows(rng, empty | meta, rates)
    return pd.DataFrame(rows)


def _surgery_settings() -> list[tuple[str, str, float]]:
    out = [("uv", f"top={f}", f) for f in (0.05, 0.1, 0.2, 0.4)]
    out += [("uv", f"top={f},tail={f}", f) for f in (0.1, 0.2)]
    out += [("reset", "layers=0-0", 0.25), ("reset", "layers=0-1", 0.5)]
    out += [("interp", f"alpha={a}", a) for a in (0.25, 0.5, 0.75)]
    return out


def _recovery(rng, evals: pd.DataFrame) -> pd.DataFrame:
    surg = evals[evals["stage"] == "surgery"]
    donor = {"id_seen": 0.5, "id_unseen": 0.45, "ood": 0.18}
    recipient = {"id_seen": 0.95, "id_unseen": 0.85, "ood": 0.09}
    rows = []
    for r in surg.itertuples():
        rec = (r.success - recipient[r.split]) / (donor[r.split] - recipient[r.split])
        high = np.inf if r.setting == "top=0.05" else rec + 0.25
        rows.append(
            {
                "method": r.method,
                "setting": r.setting,
                "fraction": r.fraction,
                "split": r.split,
                "success": r.success,
                "donor_success": donor[r.split],
                "recipient_success": recipient[r.split],
                "recovery": rec,
                "recovery_low": rec - 0.2,
                "recovery_high": high,
            }
        )
    return pd.DataFrame(rows)


def _rl_curves(rng) -> pd.DataFrame:
    rows = []
    for algo in ALGOS:
        for e in RL_STARTS:
            for seed in (0, 1):
                for step in range(31):
                    rows.append(
                        {
                            "algorithm": algo,
                            "start_epoch": e,
                            "seed": seed,
                            "step": step,
                            "reward": -1 + 3 * step / 30 / (1 + 0.2 * e) + rng.normal(0, 0.1),
                            "success": min(1.0, 0.3 + 0.02 * step + rng.normal(0, 0.02)),
                            "kl": 0.002 * step * (1 + rng.random()),
                            "entropy": 1.0 - 0.01 * step,
                            "value_loss": np.nan if algo == "grpo" else 1 / (1 + step),
                            "clip_frac": 0.1 * rng.random(),
                        }
                    )
    return pd.DataFrame(rows)


def _coupling(rng) -> pd.DataFrame:
    rows = []
    for algo in ALGOS:
        for e in RL_STARTS:
            start = 0.6 / (1 + e)
            for step in range(0, 31, 2):
                rows.append(
                    {
                        "kind": "sft_loss_during_rl",
                        "algorithm": algo,
                        "start_epoch": e,
                        "step": step,
                        "value": start + 0.01 * step + rng.normal(0, 0.005),
                        "ref_base": 0.75,
                        "ref_start": start,
                    }
                )
        for step in range(0, 21, 2):
            rows.append(
                {
                    "kind": "reward_during_sft",
                    "algorithm": algo,
                    "start_epoch": 4,
                    "step": step,
                    "value": 0.39 - 0.002 * step + rng.normal(0, 0.003),
                    "ref_base": np.nan,
                    "ref_start": np.nan,
                }
            )
    return pd.DataFrame(rows)


def _spectrum(rng) -> dict[str, pd.DataFrame]:
    values, angles, layers = [], [], []
    idx = np.arange(RANK)
    rel = idx / RANK
    for pair in PAIRS:
        for layer in range(N_LAYERS):
            for module in MODULES:
                matrix = f"model.layers.{layer}.{module}.weight"
                key = {"pair": pair, "matrix": matrix, "layer": layer, "module": module}
                s_ref = 3.0 * np.exp(-idx / 12) + 0.05
                s_tgt = s_ref * (1 + rng.normal(0, 0.01, RANK))
                for i in idx:
                    values.append(key | {"index": i, "s_ref": s_ref[i], "s_tgt": s_tgt[i]})
                u = 5 + 60 * (np.exp(-rel / 0.05) + np.exp(-(1 - rel) / 0.05)) / (1 + layer)
                v = u * 0.8 + rng.normal(0, 1, RANK)
                for i in idx:
                    angles.append(
                        key | {"index": i, "rel_index": rel[i], "angle_u": u[i], "angle_v": v[i]}
                    )
                rot = 0.6 + 0.05 * layer + rng.normal(0, 0.02)
                layers.append(
                    {
                        "pair": pair,
                        "layer": layer,
                        "module": module,
                        "mean_angle_u": u.mean(),
                        "mean_angle_v": v.mean(),
                        "rotation_share": rot,
                        "scaling_share": 1 - rot - 0.05,
                        "residual": 0.01,
                    }
                )
    return {
        "spectrum_values": pd.DataFrame(values),
        "spectrum_angles": pd.DataFrame(angles),
        "spectrum_layers": pd.DataFrame(layers),
    }


def _pooled(evals: pd.DataFrame) -> pd.DataFrame:
    """Across-seed RL rows as the tables stage writes them (three replicates)."""
    final = evals[(evals["stage"] == "rl") & (evals["checkpoint"] == "final")]
    rows = final.groupby(["algorithm", "epoch", "split"], as_index=False)["success"].mean()
    return pd.DataFrame(
        {
            "kind": "rl",
            "treatment": rows["algorithm"],
            "start_epoch": rows["epoch"],
            "split": rows["split"],
            "replicates": 3,
            "after": rows["success"],
            "after_low": rows["success"] * 0.8,
            "after_high": rows["success"] * 1.2,
        }
    )


def make_tables(seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    evals = _evals(rng)
    steps = np.arange(0, 401, 4)
    tables = {
        "evals": evals,
        "recovery": _recovery(rng, evals),
        "pooled": _pooled(evals),
        "sft_curve": pd.DataFrame(
            {
                "step": steps,
                "epoch": steps / 50,
                "train_loss": 2.0 * np.exp(-steps / 60) + 0.1 + rng.normal(0, 0.03, len(steps)),
            }
        ),
        "sft_heldout": pd.DataFrame(
            {"epoch": SFT_EPOCHS, "heldout_loss": [0.9, 0.45, 0.3, 0.28, 0.29, 0.33]}
        ),
        "rl_curves": _rl_curves(rng),
        "coupling": _coupling(rng),
    }
    return tables | _spectrum(rng)


def write_tables(tables: dict[str, pd.DataFrame], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        df.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


# ---------------------------------------------------------------------------------------------
# Expectations.

EXPECTED_PANELS = {
    "recovery": [
        "A  OOD success: SFT, then RL",
        "B  Recovery by UV merge",
        "C  Recovery by layer reset",
        "D  Recovery by interpolation",
    ],
    "sft_dynamics": ["A  Success by split over SFT", "B  SFT loss"],
    "rl_curves": [
        "A  Mean reward, PPO",
        "B  Mean reward, GRPO",
        "C  Success, PPO",
        "D  Success, GRPO",
        "E  KL divergence, PPO",
        "F  KL divergence, GRPO",
    ],
    "spectrum": [
        "A1  Singular values, layer 0 q_proj",
        "B1  Relative change, layer 0 q_proj",
        "A2  Singular values, layer 0 down_proj",
        "B2  Relative change, layer 0 down_proj",
    ],
    "angles": [
        "A  Rotation along the spectrum",
        "B  Rotation by layer",
        "C  Update energy: rotation vs scaling",
    ],
    "surgery": ["A  UV merge", "B  Layer reset", "C  Interpolation"],
    "coupling": [
        "A  SFT loss during RL, PPO",
        "B  SFT loss during RL, GRPO",
        "C  Reward during SFT after RL",
    ],
}


def count_pages(pdf: bytes) -> int:
    """Page objects in an uncompressed-xref PDF as matplotlib writes it (no poppler needed)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))


def assert_valid_pdf(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"%PDF-"), path
    assert data.rstrip().endswith(b"%%EOF"), path
    assert count_pages(data) == 1, path
    assert b"/Subtype /Image" not in data, f"{path} holds a raster image"


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return make_tables()


@pytest.fixture(scope="module")
def tables_dir(tables, tmp_path_factory) -> Path:
    return write_tables(tables, tmp_path_factory.mktemp("metrics"))


@pytest.fixture(scope="module")
def built(tables_dir, tmp_path_factory) -> Path:
    """Every figure built once from the full synthetic tables (PDF writing is the slow part)."""
    out = tmp_path_factory.mktemp("figures") / "figs"
    for name in figures.FIGURES:
        build.build_figure(name, tables_dir, out / f"{name}.pdf", {})
    return out


def sidecar(pdf: Path) -> dict:
    return json.loads(pdf.with_suffix(".json").read_text())


# ---------------------------------------------------------------------------------------------
# Tests.


def test_registry_covers_every_figure():
    """The plan's figure list is the package's figure modules, each with TABLES and draw."""
    from sftrl import plan

    assert set(figures.FIGURES) == set(EXPECTED_PANELS) == set(plan.FIGURES)
    for name in figures.FIGURES:
        module = figures.figure_module(name)
        assert callable(module.draw)
        assert set(module.TABLES) <= set(build.TABLE_COLUMNS), name


@pytest.mark.parametrize("name", sorted(EXPECTED_PANELS))
def test_build_every_figure(name, built, tables_dir):
    out = built / f"{name}.pdf"
    assert_valid_pdf(out)
    side = sidecar(out)
    assert side["figure"] == name
    assert side["pdf"] == f"{name}.pdf"
    assert side["panels"] == EXPECTED_PANELS[name]
    assert side["empty_panels"] == []
    assert side["tables_dir"] == str(tables_dir)
    assert set(side["tables"]) == set(build.figure_tables(name))
    assert all(len(t["sha256"]) == 64 for t in side["tables"].values())


def test_no_temp_files_left(built):
    names = sorted(p.name for p in built.iterdir())
    assert names == sorted(f"{n}.{ext}" for n in figures.FIGURES for ext in ("pdf", "json"))


def test_sidecar_names_the_artifacts_drawn(built):
    expected = {"base0"} | {f"sft-e{e}" for e in SFT_EPOCHS}
    expected |= {f"rl-{a}-e{e}" for a in ALGOS for e in RL_STARTS}
    assert sidecar(built / "recovery.pdf")["artifacts"] == sorted(expected)
    assert sidecar(built / "surgery.pdf")["artifacts"] == sorted(
        f"surg-{m}-{s}" for m, s, _ in _surgery_settings()
    )
    assert sidecar(built / "sft_dynamics.pdf")["artifacts"] == sorted(
        {"base0"} | {f"sft-e{e}" for e in SFT_EPOCHS}
    )
    assert sidecar(built / "spectrum.pdf")["artifacts"] == []  # no artifact column


def test_same_tables_same_bytes(built, tables_dir, tmp_path):
    again = tmp_path / "sft_dynamics.pdf"
    build.build_figure("sft_dynamics", tables_dir, again, {})
    assert again.read_bytes() == (built / "sft_dynamics.pdf").read_bytes()


def test_plot_function_returns_what_it_drew(tables, tmp_path):
    info = build.plot("coupling", tables, tmp_path / "c.pdf", {})
    assert info["figure"] == "coupling"
    assert info["panels"] == EXPECTED_PANELS["coupling"]
    assert info["empty_panels"] == [] and info["artifacts"] == []
    assert_valid_pdf(tmp_path / "c.pdf")


def test_empty_surgery_and_coupling_tables(tables, tmp_path):
    cut = dict(tables)
    cut["evals"] = tables["evals"][tables["evals"]["stage"] != "surgery"]
    cut["recovery"] = tables["recovery"].iloc[0:0]
    cut["coupling"] = tables["coupling"].iloc[0:0]
    folder = write_tables(cut, tmp_path / "metrics")
    out = tmp_path / "recovery.pdf"
    build.build_figure("recovery", folder, out, {})
    assert_valid_pdf(out)
    side = sidecar(out)
    assert side["panels"] == EXPECTED_PANELS["recovery"]
    assert side["empty_panels"] == EXPECTED_PANELS["recovery"][1:]
    assert "rl-grpo-e8" in side["artifacts"]
    _, info = build.draw("surgery", cut, {})
    assert info.empty == info.panels == ["Weight surgery"]
    _, info = build.draw("coupling", cut, {})
    assert info.empty == info.panels == ["A  SFT loss during RL", "B  Reward during SFT after RL"]


def test_no_tables_at_all_gives_no_data_panels(tmp_path):
    for name in figures.FIGURES:
        _, info = build.draw(name, {}, {})
        assert info.panels and info.empty == info.panels, name
        assert not info.artifacts
    out = tmp_path / "angles.pdf"
    build.build_figure("angles", tmp_path / "missing", out, {})
    assert_valid_pdf(out)
    side = sidecar(out)
    assert side["empty_panels"] == side["panels"] == EXPECTED_PANELS["angles"]
    assert side["tables"] == {"spectrum_angles": None, "spectrum_layers": None}


def test_missing_column_is_no_data_not_a_crash(tables):
    cut = dict(tables)
    cut["spectrum_values"] = tables["spectrum_values"].drop(columns=["s_tgt"])
    with pytest.warns(UserWarning, match="s_tgt"):
        _, info = build.draw("spectrum", cut, {})
    assert info.empty == info.panels


def test_optional_columns_may_be_missing(tables):
    cut = dict(tables)
    evals = tables["evals"].drop(columns=["ci_low", "ci_high", "method", "setting", "fraction"])
    cut["evals"] = evals[evals["stage"] != "surgery"]
    _, info = build.draw("recovery", cut, {})  # panels B-D read the recovery table
    assert info.panels == EXPECTED_PANELS["recovery"] and info.empty == []
    assert "sft-e8" in info.artifacts and "rl-ppo-e2" in info.artifacts


def test_angles_by_layer_rebuilt_without_layer_table(tables):
    cut = dict(tables)
    cut["spectrum_layers"] = tables["spectrum_layers"].iloc[0:0]
    _, info = build.draw("angles", cut, {"bins": 8})
    assert info.empty == ["C  Update energy: rotation vs scaling"]


def test_surgery_falls_back_to_recovery_table(tables):
    cut = dict(tables)
    cut["evals"] = tables["evals"][tables["evals"]["stage"] != "surgery"]
    _, info = build.draw("surgery", cut, {})
    assert info.panels == EXPECTED_PANELS["surgery"]
    assert info.empty == [] and not info.artifacts


def test_spectrum_matrices_setting(tables):
    _, info = build.draw("spectrum", tables, {"matrices": ["layers.3.self_attn.k_proj", "nope"]})
    assert info.panels == [
        "A1  Singular values, layer 3 k_proj",
        "B1  Relative change, layer 3 k_proj",
    ]


def test_settings_block_per_figure():
    block = {"bins": 5, "spectrum": {"matrices": ["x"]}, "angles": {"bins": 7}}
    assert build._figure_settings("spectrum", block) == {"bins": 5, "matrices": ["x"]}
    assert build._figure_settings("angles", block) == {"bins": 7}
    assert build._figure_settings("recovery", None) == {}


def test_failed_save_leaves_no_file(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    fig, _ = build.draw("coupling", {}, {})
    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError):
        build.save_pdf(fig, tmp_path / "x.pdf")
    assert list(tmp_path.iterdir()) == []


def test_unknown_figure(tmp_path):
    with pytest.raises(KeyError):
        build.build_figure("nope", tmp_path, tmp_path / "x.pdf", {})


def test_cli(tables_dir, tmp_path):
    out = tmp_path / "rl.pdf"
    settings = json.dumps({"metrics": ["reward", "entropy"]})
    argv = ["rl_curves", "--tables", str(tables_dir), "--out", str(out), "--settings", settings]
    assert build.main(argv) == 0
    assert_valid_pdf(out)
    side = sidecar(out)
    assert side["settings"] == {"metrics": ["reward", "entropy"]}
    assert side["panels"] == [
        "A  Mean reward, PPO",
        "B  Mean reward, GRPO",
        "C  Entropy, PPO",
        "D  Entropy, GRPO",
    ]
    with pytest.raises(SystemExit):
        build.main(["nope", "--tables", str(tables_dir), "--out", str(out)])


def test_module_stays_light():
    """The figure list needs no matplotlib (the plan reads it); drawing needs no torch."""
    code = (
        "import sys, sftrl.figures, sftrl.plan; assert 'matplotlib' not in sys.modules; "
        "import sftrl.figures.build, matplotlib; "
        "[sftrl.figures.figure_module(n) for n in sftrl.figures.FIGURES]; "
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "assert not bad, bad; assert matplotlib.get_backend().lower() == 'agg'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# Readability: no two pieces of text overlap, no legend sits on an axes.


def _tick_labels(axis) -> list:
    """Tick labels actually drawn: visible, non-empty, at a tick inside the view limits."""
    lo, hi = sorted(axis.get_view_interval())
    span = (hi - lo) * 1e-9
    ticks = axis.get_major_ticks(len(axis.get_majorticklocs()))
    ticks += axis.get_minor_ticks(len(axis.get_minorticklocs()))
    out = []
    for tick in ticks:
        if lo - span <= tick.get_loc() <= hi + span:
            out += [t for t in (tick.label1, tick.label2) if t.get_visible()]
    return out


def _texts(fig, renderer) -> list:
    """(Text, window box) of every piece of text drawn on the figure, each once."""
    ticks = {
        id(t)
        for ax in fig.axes
        for axis in (ax.xaxis, ax.yaxis)
        for tick in axis.get_major_ticks() + axis.get_minor_ticks()
        for t in (tick.label1, tick.label2)
    }
    found = [t for t in fig.findobj(Text) if id(t) not in ticks]
    for ax in fig.axes:
        if ax.get_visible():
            found += _tick_labels(ax.xaxis) + _tick_labels(ax.yaxis)
    out, seen = [], set()
    for t in found:
        if id(t) in seen or not t.get_visible() or not t.get_text().strip():
            continue
        if t.axes is not None and not t.axes.get_visible():
            continue
        seen.add(id(t))
        box = t.get_window_extent(renderer)
        if box.width > 0 and box.height > 0:
            out.append((t, box))
    return out


def _legends(fig):
    legends = list(fig.legends)
    legends += [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return legends


@pytest.mark.parametrize(
    ("name", "theme"),
    [(name, None) for name in sorted(EXPECTED_PANELS)]
    + [("recovery", {"font_scale": 1.4}), ("coupling", {"context": "notebook", "font_scale": 1})],
)
def test_layout_is_readable(name, theme, tables):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig, info = build.draw(name, tables, {"theme": theme} if theme else {})
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    texts = _texts(fig, renderer)
    clashes = []
    for (t1, b1), (t2, b2) in combinations(texts, 2):
        if b1.overlaps(b2):
            clashes.append((t1.get_text(), t2.get_text()))
    assert not clashes, clashes
    fig_box = fig.bbox
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        title = ax.get_title(loc="left")
        assert title, name
        siblings = ax.get_shared_x_axes().get_siblings(ax)
        assert not ax.has_data() or any(a.get_xlabel() for a in siblings), (name, title)
        assert not ax.has_data() or ax.get_ylabel() or ax.get_shared_y_axes().get_siblings(ax)
        for legend in _legends(fig):
            assert not legend.get_window_extent(renderer).overlaps(ax.bbox), (name, title)
    for t, box in texts:  # nothing drawn off the page
        assert box.x0 >= fig_box.x0 - 1 and box.x1 <= fig_box.x1 + 1, t.get_text()
        assert box.y0 >= fig_box.y0 - 1 and box.y1 <= fig_box.y1 + 1, t.get_text()


if __name__ == "__main__":  # write the synthetic tables and every figure, to look at them
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "figures-preview")
    folder = write_tables(make_tables(), target / "tables")
    for fig_name in figures.FIGURES:
        build.build_figure(fig_name, folder, target / f"{fig_name}.pdf", {})
        print(target / f"{fig_name}.pdf")
