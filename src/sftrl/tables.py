"""The tables stage: every measured artifact's metrics as tidy parquet tables.

Figures and the run summary read these tables only (never a model), so re-drawing a figure
costs a plot, and each table names the artifact ids its rows came from. Columns are listed in
`sftrl.figures.style.TABLE_COLUMNS`; every table is written even when empty (e.g. no surgery
configured).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sftrl.data import EVAL_SPLITS, SELECT_SPLIT
from sftrl.stats import recovery_interval, replicated_interval
from sftrl.store import read_manifest
from sftrl.surgery import registry as surgery
from sftrl.train.common import read_jsonl

RL_SEED = re.compile(r" seed \d+")  # in RL labels: "ppo from epoch-4 seed 0"
NO_RL = "none"  # the coupling table's algorithm of the no-RL twin (SFT after SFT, a control)

# ----------------------------------------------------------------------------- readers


def checkpoint_position(stage: str, checkpoint: str, params: dict[str, Any]) -> dict[str, Any]:
    """Where a checkpoint sits: SFT epoch (RL: its start epoch) and RL step."""
    epoch, step = math.nan, math.nan
    if stage == "base":
        epoch = 0.0
    elif stage == "sft" and checkpoint.startswith("epoch-"):
        epoch = float(checkpoint.removeprefix("epoch-"))
    elif stage == "rl":
        epoch = float(params["start_epoch"])
        step = params.get("steps", math.nan) if checkpoint == "final" else None
        if checkpoint.startswith("step-"):
            step = int(checkpoint.removeprefix("step-"))
    return {"epoch": epoch, "rl_step": step}


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


# ----------------------------------------------------------------------------- tables


class Collector:
    def __init__(self, artifacts: list[dict[str, Any]], base_models: dict[str, str]):
        self.artifacts = artifacts
        self.manifests = {a["id"]: read_manifest(a["dir"]) for a in artifacts}
        self.info = {a["id"]: a for a in artifacts}
        self.base_model_ids = set(base_models.values())  # one per replicate (or one hf model)
        # (kind, treatment, start epoch, split) -> per-replicate outcomes, for `pooled`
        self.outcomes: list[tuple[tuple, np.ndarray, np.ndarray, np.ndarray]] = []

    def eval_of(self) -> dict[str, str]:
        """Model artifact id -> the id of its evaluation."""
        return {self.manifests[a["id"]]["parents"]["model"]: a["id"] for a in self.of_stage("eval")}

    def rl_outcomes(self) -> None:
        """Per RL run and split: final RL (after), its SFT start (recipient) and the SFT OOD
        peak (donor, picked on the selection split when there is one: never on these hands)."""
        from sftrl.jobs import select_checkpoint

        eval_of = self.eval_of()
        for art in self.of_stage("rl"):
            manifest = self.manifests[art["id"]]
            params = manifest["params"]
            sft_eval = eval_of[manifest["parents"]["sft"]]
            summary = json.loads((Path(self.info[sft_eval]["dir"]) / "summary.json").read_text())
            splits = next(iter(summary["models"].values()))["splits"]
            peak_on = SELECT_SPLIT if SELECT_SPLIT in splits else "ood"
            peak = select_checkpoint(
                {"rule": "ood_peak", "split": peak_on}, self.info[sft_eval]["dir"]
            )
            for split in EVAL_SPLITS:
                after = self.predictions(eval_of[art["id"]], "final", split)
                r = self.predictions(sft_eval, params["start"], split)
                d = self.predictions(sft_eval, peak, split)
                key = ("rl", params["algorithm"], float(params["start_epoch"]), split)
                self.outcomes.append((key, after, r, d))

    def pooled(self) -> pd.DataFrame:
        """One row per treatment (RL algorithm and start epoch, or surgery setting) and split,
        over every replicate: mean success after, the change from the recipient, and the
        share of the lost success recovered, each with a seeds-then-hands bootstrap interval
        (sftrl.stats.replicated_interval)."""
        groups: dict[tuple, list[dict[str, np.ndarray]]] = {}
        for key, after, r, d in self.outcomes:
            if after.size and after.size == r.size == d.size:
                groups.setdefault(key, []).append({"after": after, "recipient": r, "donor": d})
        rows = []
        for (kind, treatment, start_epoch, split), reps in groups.items():
            stats = replicated_interval(reps, seed=0)
            stats.pop("method")
            if math.isclose(stats["donor"], stats["recipient"], abs_tol=1e-9):
                # no loss to recover: the ratio is rounding noise (e.g. -3e15), not a share
                stats.update(recovery=None, recovery_low=None, recovery_high=None)
            rows.append(
                {
                    "kind": kind,
                    "treatment": treatment,
                    "start_epoch": start_epoch,
                    "split": split,
                    **{k: _nan(v) for k, v in stats.items()},
                }
            )
        return pd.DataFrame(rows)

    def replicate(self, art_id: str) -> int | None:
        """The seed of the chain an artifact belongs to (tables written before: None)."""
        return self.info[art_id].get("replicate")

    def of_stage(self, stage: str) -> list[dict[str, Any]]:
        return [a for a in self.artifacts if a["stage"] == stage]

    def surgery_setting(self, surgery_id: str) -> tuple[str, float]:
        config = json.loads(
            (Path(self.info[surgery_id]["dir"]) / "model" / "config.json").read_text()
        )
        return surgery.setting(self.manifests[surgery_id]["params"], config["num_hidden_layers"])

    def model_stage(self, model_id: str) -> tuple[str, dict[str, Any], str]:
        if model_id in self.base_model_ids:
            return "base", {}, "base"
        info = self.info[model_id]
        return info["stage"], self.manifests[model_id]["params"], info["label"]

    def evals(self) -> pd.DataFrame:
        rows = []
        for art in self.of_stage("eval"):
            manifest = self.manifests[art["id"]]
            stage, params, label = self.model_stage(manifest["parents"]["model"])
            summary = json.loads((Path(art["dir"]) / "summary.json").read_text())
            model_id = manifest["parents"]["model"]
            setting, fraction = (
                self.surgery_setting(model_id) if stage == "surgery" else (None, None)
            )
            for checkpoint, result in summary["models"].items():
                probe = result.get("reference_nll") or {}  # absent: vllm, or older evals
                for split, m in result["splits"].items():
                    nll = probe.get(split) or {}
                    rows.append(
                        {
                            "stage": stage,
                            "artifact": manifest["parents"]["model"],
                            "eval": art["id"],
                            "replicate": self.replicate(art["id"]),
                            "label": label,
                            "checkpoint": checkpoint,
                            **checkpoint_position(stage, checkpoint, params),
                            "algorithm": params.get("algorithm"),
                            "seed": params.get("seed"),
                            "method": params.get("method"),
                            "setting": setting,
                            "fraction": fraction,
                            "split": split,
                            "n": m["n"],
                            "success": m["success"]["rate"],
                            "ci_low": m["success"]["low"],
                            "ci_high": m["success"]["high"],
                            "mean_reward": m["mean_reward_at_1"],
                            "number_acc": m["number_accuracy"],
                            "says_ten": m["says_ten_rate"],
                            # the face-token NLL probe (sftrl.evaluate.reference_nll)
                            "nll_all": _or_nan(nll.get("all")),
                            "nll_face": _or_nan(nll.get("face")),
                            "nll_face_last": _or_nan(nll.get("face_last")),
                            "nll_other": _or_nan(nll.get("other")),
                        }
                    )
        return pd.DataFrame(rows)

    def predictions(self, eval_id: str, checkpoint: str, split: str) -> np.ndarray:
        frame = pd.read_parquet(Path(self.info[eval_id]["dir"]) / "predictions.parquet")
        keep = (frame["checkpoint"] == checkpoint) & (frame["split"] == split)
        return frame[keep].sort_values(["item", "sample"])["success"].astype(float).to_numpy()

    def recovery(self) -> pd.DataFrame:
        """(surgery - recipient) / (donor - recipient) per split, paired bootstrap interval."""
        rows = []
        eval_of = self.eval_of()
        for art in self.of_stage("surgery"):
            manifest = self.manifests[art["id"]]
            params = manifest["params"]
            donor = Path(manifest["inputs"]["donor"]).name
            recipient = Path(manifest["inputs"]["recipient"]).name
            sft_eval = eval_of[manifest["parents"]["donor"]]
            setting, fraction = self.surgery_setting(art["id"])
            for split in EVAL_SPLITS:
                after = self.predictions(eval_of[art["id"]], "model", split)
                r = self.predictions(sft_eval, recipient, split)
                d = self.predictions(sft_eval, donor, split)
                rec = recovery_interval(after, r, d, seed=0)
                self.outcomes.append(
                    (("surgery", f"{params['method']} {setting}", math.nan, split), after, r, d)
                )
                rows.append(
                    {
                        "artifact": art["id"],
                        "replicate": self.replicate(art["id"]),
                        "method": params["method"],
                        "setting": setting,
                        "fraction": fraction,
                        "split": split,
                        "donor": donor,
                        "recipient": recipient,
                        "success": float(after.mean()) if after.size else math.nan,
                        "donor_success": float(d.mean()) if d.size else math.nan,
                        "recipient_success": float(r.mean()) if r.size else math.nan,
                        "recovery": _nan(rec["estimate"]),
                        "recovery_low": _nan(rec["low"]),
                        "recovery_high": _nan(rec["high"]),
                    }
                )
        return pd.DataFrame(rows)

    def sft_curves(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        train, heldout = [], []
        for art in self.of_stage("sft"):
            for rec in read_jsonl(Path(art["dir"]) / "train_log.jsonl"):
                train.append(
                    {
                        "artifact": art["id"],
                        "replicate": self.replicate(art["id"]),
                        "step": rec["step"],
                        "epoch": rec.get("epoch"),
                        "train_loss": rec["loss"],
                    }
                )
            for rec in read_jsonl(Path(art["dir"]) / "heldout_loss.jsonl"):
                heldout.append(
                    {
                        "artifact": art["id"],
                        "replicate": self.replicate(art["id"]),
                        "epoch": rec["epoch"],
                        "heldout_loss": rec["heldout_loss"],
                    }
                )
        return pd.DataFrame(train), pd.DataFrame(heldout)

    def rl_curves(self) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
        curves, coupling = [], []
        for art in self.of_stage("rl"):
            params = self.manifests[art["id"]]["params"]
            key = {
                "artifact": art["id"],
                "replicate": self.replicate(art["id"]),
                "algorithm": params["algorithm"],
                "start_epoch": float(params["start_epoch"]),
                "seed": params["seed"],
            }
            for rec in read_jsonl(Path(art["dir"]) / "metrics.jsonl"):
                curves.append(
                    {
                        **key,
                        "step": rec["step"],
                        "reward": rec.get("reward", math.nan),
                        "success": rec.get("success", math.nan),
                        "kl": _first(rec, "kl_start", "kl"),
                        "entropy": rec.get("entropy", math.nan),
                        "value_loss": rec.get("value_loss", math.nan),
                        "clip_frac": _first(rec, "clip_frac", "clip_ratio/region_mean"),
                    }
                )
            losses = read_jsonl(Path(art["dir"]) / "sft_loss.jsonl")
            refs = {r["model"]: r["loss"] for r in losses if r["model"] in ("base", "start")}
            for rec in losses:
                if rec["model"] == "policy":
                    coupling.append(
                        {
                            **key,
                            "kind": "sft_loss_during_rl",
                            "step": rec["step"],
                            "value": rec["loss"],
                            "ref_base": refs.get("base", math.nan),
                            "ref_start": refs.get("start", math.nan),
                        }
                    )
        return pd.DataFrame(curves), coupling

    def rlsft_curves(self) -> list[dict[str, Any]]:
        """Reward during SFT after RL; the no-RL twin (SFT after SFT) is algorithm "none"."""
        rows = []
        for art in self.of_stage("rlsft"):
            parents = self.manifests[art["id"]]["parents"]
            if "rl" in parents:
                rl_params = self.manifests[parents["rl"]]["params"]
                algorithm, start_epoch = rl_params["algorithm"], rl_params["start_epoch"]
            else:
                algorithm = NO_RL
                start_epoch = self.manifests[parents["sft"]]["params"]["epochs"][-1]
            for rec in read_jsonl(Path(art["dir"]) / "metrics.jsonl"):
                rows.append(
                    {
                        "artifact": art["id"],
                        "replicate": self.replicate(art["id"]),
                        "algorithm": algorithm,
                        "start_epoch": float(start_epoch),
                        "kind": "reward_during_sft",
                        "step": rec["step"],
                        "value": rec["reward"],
                        "ref_base": math.nan,
                        "ref_start": math.nan,
                    }
                )
        return rows

    def spectra(self) -> dict[str, pd.DataFrame]:
        values, angles, layers = [], [], []
        for art in self.of_stage("spectrum"):
            # "... ppo from epoch-4 seed 2 final" -> "... ppo from epoch-4 final": the RL seed
            # follows the replicate, so pairs of different replicates are one pair
            pair = RL_SEED.sub("", art["label"])
            per_index = pd.read_parquet(Path(art["dir"]) / "per_index.parquet")
            per_index = per_index.assign(
                pair=pair, artifact=art["id"], replicate=self.replicate(art["id"])
            )
            values.append(
                per_index[
                    ["pair", "artifact", "replicate", "matrix", "layer", "module", "index"]
                    + ["s_ref", "s_tgt"]
                ]
            )
            # spectrum tables hold radians; figures and the summary speak degrees
            degrees = per_index.assign(
                angle_u=np.degrees(per_index["angle_u"]), angle_v=np.degrees(per_index["angle_v"])
            )
            profile = ["angle_u", "angle_v"]
            if "null_angle_u" in per_index:  # the random-update null (sftrl.spectrum)
                degrees["null_angle_u"] = np.degrees(per_index["null_angle_u"])
                profile.append("null_angle_u")
            angles.append(
                degrees[
                    ["pair", "artifact", "replicate", "matrix", "layer", "module", "index"]
                    + ["rel_index", *profile]
                ]
            )
            per_layer = pd.read_parquet(Path(art["dir"]) / "per_layer.parquet").rename(
                columns={"share_rotation": "rotation_share", "share_scaling": "scaling_share"}
            )
            per_layer["mean_angle_u"] = np.degrees(per_layer["angle_u_mean"])
            per_layer["mean_angle_v"] = np.degrees(per_layer["angle_v_mean"])
            if "null_angle_u_mean" in per_layer:  # the random-update null (sftrl.spectrum)
                per_layer["null_mean_angle_u"] = np.degrees(per_layer["null_angle_u_mean"])
            layers.append(
                per_layer.assign(pair=pair, artifact=art["id"], replicate=self.replicate(art["id"]))
            )
        return {
            "spectrum_values": pd.concat(values, ignore_index=True) if values else pd.DataFrame(),
            "spectrum_angles": pd.concat(angles, ignore_index=True) if angles else pd.DataFrame(),
            "spectrum_layers": pd.concat(layers, ignore_index=True) if layers else pd.DataFrame(),
        }


def contrasts(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per replicate, each effect beside its control (issue 13): the spectra's rotation
    against the random update of equal norm (F4), and the RL reward's change during SFT after
    RL against the same SFT from the SFT checkpoint with no RL (claim 2 of 2601.07389)."""
    rows = []
    layers = tables["spectrum_layers"]
    if not layers.empty and "null_share_rotation" in layers:
        whole = layers[layers["module"] == "*"]
        for (pair, rep), group in whole.groupby(["pair", "replicate"], dropna=False, sort=False):
            for effect, real, null in (
                ("mean top-k angle, U (deg)", "mean_angle_u", "null_mean_angle_u"),
                ("dW energy in rotation", "rotation_share", "null_share_rotation"),
            ):
                rows.append(
                    {
                        "effect": f"{effect}: {pair}",
                        "control": "random update of equal norm",
                        "replicate": rep,
                        "value": group[real].mean(),
                        "control_value": group[null].mean(),
                    }
                )
    coupling = tables["coupling"]
    if not coupling.empty:
        reward = coupling[coupling["kind"] == "reward_during_sft"].sort_values("step")
        change = reward.groupby(["algorithm", "start_epoch", "replicate"], dropna=False)[
            "value"
        ].agg(lambda v: v.iloc[-1] - v.iloc[0])
        control = {rep: v for (algo, _, rep), v in change.items() if algo == NO_RL}
        for (algo, epoch, rep), value in change.items():
            if algo != NO_RL and rep in control:
                rows.append(
                    {
                        "effect": f"RL reward change during SFT after {algo} (from epoch "
                        f"{epoch:g})",
                        "control": "the same SFT with no RL before it",
                        "replicate": rep,
                        "value": value,
                        "control_value": control[rep],
                    }
                )
    return pd.DataFrame(rows, columns=["effect", "control", "replicate", "value", "control_value"])


def seed_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean over replicates and its t-interval (NaN bounds for one replicate)."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if values.size < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / values.size**0.5
    return mean, mean - half, mean + half


def _first(record: dict[str, Any], *keys: str) -> float:
    for key in keys:
        if record.get(key) is not None:
            return record[key]
    return math.nan


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def collect(
    artifacts: list[dict[str, Any]], base_models: dict[str, str]
) -> dict[str, pd.DataFrame]:
    c = Collector(artifacts, base_models)
    sft_curve, sft_heldout = c.sft_curves()
    rl_curves, coupling = c.rl_curves()
    recovery = c.recovery()
    c.rl_outcomes()
    tables = {
        "evals": c.evals(),
        "recovery": recovery,
        "pooled": c.pooled(),
        "sft_curve": sft_curve,
        "sft_heldout": sft_heldout,
        "rl_curves": rl_curves,
        "coupling": pd.DataFrame(coupling + c.rlsft_curves()),
        **c.spectra(),
    }
    tables["contrasts"] = contrasts(tables)
    return tables


# ----------------------------------------------------------------------------- summary


def _pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def summary_markdown(tables: dict[str, pd.DataFrame]) -> str:
    """The key numbers of a run as Markdown (printed at the end of `make run`)."""
    ev = tables["evals"]
    lines = ["# sftrl run summary", ""]
    if not ev.empty:
        models = ev[ev["stage"].isin(["base", "sft"])]
        wide = models.pivot_table(index="epoch", columns="split", values="success")
        lines += [
            "## Success by SFT epoch (epoch 0 = base model)",
            "",
            "| epoch | ID seen | ID unseen | OOD |",
            "|---|---|---|---|",
        ]
        for epoch, row in wide.iterrows():
            lines.append(
                f"| {epoch:g} | {_pct(row.get('id_seen'))} | {_pct(row.get('id_unseen'))} "
                f"| {_pct(row.get('ood'))} |"
            )
        ood = models[models["split"] == "ood"]
        if "nll_face" in ood and ood["nll_face"].notna().any():
            nll = ood.groupby("epoch")[["nll_face", "nll_face_last", "nll_other"]].mean()
            lines += [
                "",
                "## NLL of the solver's OOD answers by SFT epoch (face-card numbers apart)",
                "",
                "| epoch | face-number tokens | their last token | other tokens |",
                "|---|---|---|---|",
            ]
            for epoch, row in nll.iterrows():
                lines.append(
                    f"| {epoch:g} | {row['nll_face']:.3f} | {row['nll_face_last']:.3f} "
                    f"| {row['nll_other']:.3f} |"
                )
        rl = ev[(ev["stage"] == "rl") & (ev["checkpoint"] == "final") & (ev["split"] == "ood")]
        if not rl.empty:
            lines += [
                "",
                "## OOD success: SFT checkpoint -> after RL",
                "",
                "| start epoch | algorithm | seed | before | after |",
                "|---|---|---|---|---|",
            ]
            sft_ood = wide["ood"] if "ood" in wide else pd.Series(dtype=float)
            for _, row in rl.sort_values(["epoch", "algorithm", "seed"]).iterrows():
                before = sft_ood.get(row["epoch"], math.nan)
                lines.append(
                    f"| {row['epoch']:g} | {row['algorithm']} | {int(row['seed'])} "
                    f"| {_pct(before)} | {_pct(row['success'])} |"
                )
    pooled = tables.get("pooled", pd.DataFrame())
    if not pooled.empty:
        ood = pooled[pooled["split"] == "ood"].sort_values(["kind", "start_epoch", "treatment"])
        lines += [
            "",
            "## OOD across replicates (mean; 95% interval over seeds, then hands)",
            "",
            "Recipient: the SFT checkpoint treated (RL: its start; surgery: the SFT end); donor:"
            " the SFT OOD peak (picked on the selection split when there is one).",
            "",
            "| treatment | start epoch | seeds | recipient | donor | after [95%] "
            "| change [95%] | share of lost OOD recovered [95%] |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for _, row in ood.iterrows():
            epoch = "-" if math.isnan(row["start_epoch"]) else f"{row['start_epoch']:g}"
            share = (
                "undefined (no loss to recover)"
                if math.isnan(row["recovery"])
                else f"{row['recovery']:.2f} [{row['recovery_low']:.2f}, "
                f"{row['recovery_high']:.2f}]"
            )
            lines.append(
                f"| {row['kind']} {row['treatment']} | {epoch} | {int(row['replicates'])} "
                f"| {_pct(row['recipient'])} | {_pct(row['donor'])} "
                f"| {_pct(row['after'])} [{_pct(row['after_low'])}, {_pct(row['after_high'])}] "
                f"| {100 * row['diff']:+.1f} [{100 * row['diff_low']:+.1f}, "
                f"{100 * row['diff_high']:+.1f}] pp | {share} |"
            )
    rec = tables["recovery"]
    if not rec.empty:
        ood = rec[rec["split"] == "ood"]
        lines += [
            "",
            "## Weight surgery: OOD recovery (donor = SFT OOD peak, recipient = SFT end)",
            "",
            "| surgery | OOD | recovery [95% CI] |",
            "|---|---|---|",
        ]
        for _, row in ood.iterrows():
            interval = (
                "undefined (donor and recipient tie)"
                if math.isnan(row["recovery"])
                else f"{row['recovery']:.2f} "
                f"[{row['recovery_low']:.2f}, {row['recovery_high']:.2f}]"
            )
            lines.append(
                f"| {row['method']} {row['setting']} | {_pct(row['success'])} | {interval} |"
            )
    layers = tables["spectrum_layers"]
    if not layers.empty and "module" in layers:
        whole = layers[layers["module"] == "*"].groupby("pair", sort=False)
        lines += [
            "",
            "## Spectra (mean over layers; all 2-D matrices)",
            "",
            "| pair | mean abs. rel. singular-value change | mean top-k principal angle, U (deg) "
            "| dW energy (full bases): rotation / scaling | the same for a random update of "
            "equal norm: angle / rotation / scaling |",
            "|---|---|---|---|---|",
        ]
        for pair, group in whole:
            rotation, scaling = group["rotation_share"].mean(), group["scaling_share"].mean()
            null = "-"
            if "null_share_rotation" in group and group["null_share_rotation"].notna().any():
                null = (
                    f"{group['null_mean_angle_u'].mean():.1f} / "
                    f"{_pct(group['null_share_rotation'].mean())} / "
                    f"{_pct(group['null_share_scaling'].mean())}"
                )
            lines.append(
                f"| {pair} | {_pct(group['sv_rel_mean_abs'].mean())} "
                f"| {group['mean_angle_u'].mean():.1f} | {_pct(rotation)} / {_pct(scaling)} "
                f"| {null} |"
            )
    coupling = tables["coupling"]
    if not coupling.empty:
        lines += ["", "## Non-decoupling (arXiv 2601.07389)", ""]
        during = coupling[coupling["kind"] == "sft_loss_during_rl"].sort_values("step")
        for (algo, epoch), group in during.groupby(["algorithm", "start_epoch"]):
            last = group.groupby("replicate", dropna=False).last()  # each replicate's end
            lines.append(
                f"- {algo} from epoch {epoch:g}: SFT loss {last['ref_start'].mean():.3f} at "
                f"start -> {last['value'].mean():.3f} after {int(last['step'].max())} RL updates "
                f"(base model: {last['ref_base'].mean():.3f}; mean of {len(last)} seed(s))"
            )
        after = coupling[coupling["kind"] == "reward_during_sft"].sort_values("step")
        for (algo, epoch), group in after.groupby(["algorithm", "start_epoch"]):
            ends = group.groupby("replicate", dropna=False)["value"]
            what = f"{algo} (from epoch {epoch:g})" if algo != NO_RL else f"SFT epoch {epoch:g}"
            lines.append(
                f"- SFT after {what}: mean@1 reward "
                f"{ends.first().mean():.3f} -> {ends.last().mean():.3f}"
                + (" (no-RL control)" if algo == NO_RL else "")
                + f" (mean of {ends.ngroups} seed(s))"
            )
    pairs = tables.get("contrasts", pd.DataFrame())
    if not pairs.empty:
        lines += [
            "",
            "## Effects beside their controls (mean over seeds; 95% t-interval over seeds)",
            "",
            "| effect | control | seeds | effect | control | effect - control [95%] "
            "| seeds with effect > control |",
            "|---|---|---|---|---|---|---|",
        ]
        for (effect, control), group in pairs.groupby(["effect", "control"], sort=False):
            diff = (group["value"] - group["control_value"]).to_numpy()
            mean, low, high = seed_interval(diff)
            interval = "n/a" if math.isnan(low) else f"[{low:.3f}, {high:.3f}]"
            lines.append(
                f"| {effect} | {control} | {len(group)} | {group['value'].mean():.3f} "
                f"| {group['control_value'].mean():.3f} | {mean:+.3f} {interval} "
                f"| {int((diff > 0).sum())} of {len(group)} |"
            )
    return "\n".join(lines) + "\n"


def run(spec: dict[str, Any]) -> None:
    from sftrl.store import open_artifact

    tables = collect(spec["inputs"]["artifacts"], spec["inputs"]["base_models"])
    with open_artifact(spec) as art:
        for name, frame in tables.items():
            frame.to_parquet(Path(art.path) / f"{name}.parquet", index=False)
        (Path(art.path) / "summary.md").write_text(summary_markdown(tables))
        art.summary["rows"] = {name: len(frame) for name, frame in tables.items()}


def write_summary(tables_dir: str | Path, out: str | Path) -> None:
    """Copy the tables' summary to a stable path (atomically) and print it."""
    text = (Path(tables_dir) / "summary.md").read_text()
    tmp = Path(f"{out}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, out)
    print(text)
