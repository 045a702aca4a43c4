"""The artifact graph of one config: every artifact's stage, params, parents and content id.

The Snakefile asks this module for paths and job specs; nothing here runs a job. Ids depend
only on (stage, params, parent ids, code fingerprint), so the same config and code give the
same paths, and any change gives new ones for that stage and everything downstream.

Model checkpoints are addressed as (artifact, sub-directory), e.g. the SFT artifact's
`epoch-2/`. Choices that depend on results (the SFT checkpoint with the best OOD success, the
"OOD peak") are made at run time from a named evaluation artifact; that evaluation's id is a
parent, so the choice is still a pure function of the parent ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sftrl.store import artifact_id, code_fingerprint, presentation_hash

# The paper's figures, one rule each: results/figures/<name>.pdf
FIGURES = ("recovery", "sft_dynamics", "rl_curves", "spectrum", "angles", "surgery", "coupling")
# Stages whose metrics the tables stage collects for figures and the summary.
MEASURED_STAGES = ("eval", "sft", "rl", "rlsft", "spectrum", "surgery")


def epoch_name(epoch: float) -> str:
    """`epoch-2`, `epoch-0.5`: the sub-directory of an SFT checkpoint."""
    return f"epoch-{epoch:g}"


@dataclass
class Artifact:
    stage: str
    id: str
    params: dict[str, Any]
    parents: dict[str, str]  # role -> parent id (ids only: they make this id)
    inputs: dict[str, Any]  # role -> path(s) the job reads
    label: str  # human name for tables and figures, e.g. "sft epoch-2"
    models: list[str] = field(default_factory=list)  # model sub-directories it will hold
    root: str = "results"

    @property
    def dir(self) -> str:
        return f"{self.root}/{self.stage}/{self.id}"

    @property
    def manifest(self) -> str:
        return f"{self.dir}/manifest.json"

    def model_path(self, sub: str) -> str:
        return f"{self.dir}/{sub}"

    def spec(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "id": self.id,
            "params": self.params,
            "parents": self.parents,
            "inputs": self.inputs,
            "root": self.root,
        }


@dataclass(frozen=True)
class ModelRef:
    """A model a stage reads: a checkpoint of an artifact, or an external HF model."""

    key: str  # what goes into the consumer's parents (artifact id or "hf:<path>")
    path: str  # directory (or hub id) the job loads
    label: str
    select: dict[str, Any] | None = None  # run-time choice among the artifact's checkpoints

    def as_param(self) -> dict[str, Any]:
        return {"label": self.label, "select": self.select}


class Plan:
    """Builds every artifact of a validated config in dependency order."""

    def __init__(self, config: dict[str, Any], fingerprint: dict | None = None):
        self.config = config
        self.root = config["results"]
        self.fingerprint = fingerprint if fingerprint is not None else code_fingerprint()
        self.artifacts: dict[str, Artifact] = {}
        self.by_stage: dict[str, list[Artifact]] = {}
        self._build()

    # -- bookkeeping -------------------------------------------------------------------
    def add(
        self,
        stage: str,
        params: dict[str, Any],
        parents: dict[str, str],
        inputs: dict[str, Any],
        label: str,
        models: list[str] | None = None,
    ) -> Artifact:
        # JSON round trip: tuples become lists, exactly as the job will see them.
        params = json.loads(json.dumps(params))
        art_id = artifact_id(stage, params, parents, self.fingerprint)
        art = Artifact(stage, art_id, params, parents, inputs, label, models or [], self.root)
        if art_id not in self.artifacts:
            self.artifacts[art_id] = art
            self.by_stage.setdefault(stage, []).append(art)
        return self.artifacts[art_id]

    def get(self, stage: str, art_id: str) -> Artifact:
        art = self.artifacts.get(art_id)
        if art is None or art.stage != stage:
            raise KeyError(
                f"no {stage} artifact {art_id} in this config's plan: ids follow the config and "
                "the sftrl code, so after a change ask for a target by name "
                "(e.g. results/figures/recovery.pdf) or run plain `snakemake`"
            )
        return art

    def stage(self, name: str) -> list[Artifact]:
        return self.by_stage.get(name, [])

    # -- the graph -----------------------------------------------------------------------
    def _build(self) -> None:
        cfg = self.config
        self.data = self.add(
            "data",
            {
                **cfg["data"],
                "seed": cfg["seed"],
                "train_rule": {"name": cfg["game"]["train_rule"], **self._rule("train_rule")},
                "ood_rule": {"name": cfg["game"]["ood_rule"], **self._rule("ood_rule")},
            },
            {},
            {},
            "data",
        )
        self.base = self._base_model()
        self.evals: dict[str, Artifact] = {}
        if self.base.key.startswith("hf:"):
            self.evaluate_external(self.base)
        else:
            self.evaluate(self.artifacts[self.base.key])

        sft_params = {**cfg["sft"], "seed": cfg["seed"], "model": self._model_params()}
        self.sft = self.add(
            "sft",
            sft_params,
            {"data": self.data.id, "base": self.base.key},
            {"data": self.data.dir, "base_model": self.base.path},
            "sft",
            [epoch_name(e) for e in cfg["sft"]["epochs"]],
        )
        self.evaluate(self.sft)
        self.sft_end = self.checkpoint(self.sft, epoch_name(cfg["sft"]["epochs"][-1]))
        self.sft_peak = ModelRef(
            self.sft.id,
            self.sft.dir,
            "sft ood-peak",
            {"rule": "ood_peak", "eval": self.evals[self.sft.id].id, "split": "ood"},
        )
        self._rl()
        self._rlsft()
        self._spectra()
        self._surgery()
        self._tables()

    def _rule(self, role: str) -> dict[str, Any]:
        return self.config["game"]["rules"][self.config["game"][role]]

    def _model_params(self) -> dict[str, Any]:
        model = self.config["model"]
        return {"source": model["source"], "dtype": model["dtype"]}

    def _base_model(self) -> ModelRef:
        model = self.config["model"]
        if model["source"] == "hf":
            return ModelRef(f"hf:{model['hf_path']}", model["hf_path"], "base")
        pretrain = self.add(
            "pretrain",
            {**self.config["pretrain"], "seed": self.config["seed"], "model": model["tiny"]},
            {"data": self.data.id},
            {"data": self.data.dir},
            "base",
            ["model"],
        )
        return self.checkpoint(pretrain, "model", "base")

    def checkpoint(self, art: Artifact, sub: str, label: str | None = None) -> ModelRef:
        return ModelRef(art.id, art.model_path(sub), label or f"{art.label} {sub}")

    def evaluate(self, art: Artifact) -> Artifact:
        """One evaluation artifact per model artifact, covering each checkpoint in it."""
        ev = self.add(
            "eval",
            self.config["eval"],
            {"model": art.id, "data": self.data.id},
            {"data": self.data.dir, "models": {m: art.model_path(m) for m in art.models}},
            f"eval {art.label}",
        )
        self.evals[art.id] = ev
        return ev

    def evaluate_external(self, ref: ModelRef) -> Artifact:
        ev = self.add(
            "eval",
            self.config["eval"],
            {"model": ref.key, "data": self.data.id},
            {"data": self.data.dir, "models": {"model": ref.path}},
            f"eval {ref.label}",
        )
        self.evals[ref.key] = ev
        return ev

    def _rl(self) -> None:
        rl = self.config["rl"]
        starts = rl["start_epochs"] or self.config["sft"]["epochs"]
        self.rl_runs: list[Artifact] = []
        for algorithm in rl["algorithms"]:
            algo_params = rl[algorithm]
            for seed in rl["seeds"]:
                for epoch in starts:
                    start = epoch_name(epoch)
                    run = self.add(
                        "rl",
                        {
                            "algorithm": algorithm,
                            "seed": seed,
                            "start": start,
                            "start_epoch": epoch,
                            "model": self._model_params(),
                            **algo_params,
                        },
                        {"data": self.data.id, "sft": self.sft.id, "base": self.base.key},
                        {
                            "data": self.data.dir,
                            "start_model": self.sft.model_path(start),
                            "base_model": self.base.path,
                        },
                        f"{algorithm} from {start} seed {seed}",
                        rl_checkpoints(algo_params),
                    )
                    self.rl_runs.append(run)
                    self.evaluate(run)

    def _rlsft(self) -> None:
        cfg = self.config["rlsft"]
        self.rlsft_runs: list[Artifact] = []
        if not cfg.get("enabled", True):
            return
        start_epoch = self.config["sft"]["epochs"][-1]
        for run in self.rl_runs:
            if (
                run.params["start_epoch"] != start_epoch
                or run.params["seed"] != self.config["rl"]["seeds"][0]
            ):
                continue
            branch = self.add(
                "rlsft",
                {**cfg, "seed": self.config["seed"], "model": self._model_params()},
                {"rl": run.id, "data": self.data.id},
                {"data": self.data.dir, "start_model": run.model_path("final")},
                f"sft after {run.label}",
                ["final"],
            )
            self.rlsft_runs.append(branch)
            self.evaluate(branch)

    def _spectra(self) -> None:
        cfg = self.config["spectrum"]
        pairs: list[tuple[ModelRef, ModelRef]] = []
        for epoch in self.config["sft"]["epochs"]:
            pairs.append((self.base, self.checkpoint(self.sft, epoch_name(epoch))))
        pairs.append((self.sft_peak, self.sft_end))
        for run in self.rl_runs:
            if run.params["start"] == epoch_name(self.config["sft"]["epochs"][-1]):
                final = self.checkpoint(run, "final")
                pairs.append((self.sft_end, final))
                pairs.append((self.base, final))
        self.spectra = [self._pair("spectrum", cfg, ref, tgt) for ref, tgt in pairs]

    def _pair(
        self,
        stage: str,
        params: dict,
        a: ModelRef,
        b: ModelRef,
        roles: tuple[str, str] = ("reference", "target"),
        label: str | None = None,
        models: list[str] | None = None,
    ) -> Artifact:
        parents = {roles[0]: a.key, roles[1]: b.key}
        inputs: dict[str, Any] = {roles[0]: a.path, roles[1]: b.path}
        for role, ref in zip(roles, (a, b), strict=True):
            if ref.select:
                # run-time choice: the job reads this evaluation to pick the checkpoint
                eval_art = self.artifacts[ref.select["eval"]]
                parents[f"{role}_eval"] = eval_art.id
                inputs[f"{role}_eval"] = eval_art.dir
        full = {
            **params,
            roles[0]: {**a.as_param(), "path_in_parent": a.path.removeprefix(f"{self.root}/")},
            roles[1]: {**b.as_param(), "path_in_parent": b.path.removeprefix(f"{self.root}/")},
        }
        return self.add(stage, full, parents, inputs, label or f"{a.label} -> {b.label}", models)

    def _surgery(self) -> None:
        cfg = self.config["surgery"]
        self.surgeries: list[Artifact] = []
        for method in ("uv", "reset", "interp"):
            for entry in cfg[method]:
                art = self._pair(
                    "surgery",
                    {"method": method, **entry},
                    self.sft_peak,
                    self.sft_end,
                    roles=("donor", "recipient"),
                    label=f"{method} {surgery_label(entry)}",
                    models=["model"],
                )
                self.surgeries.append(art)
                self.evaluate(art)

    def _tables(self) -> None:
        """Tidy metric tables of every measured artifact: what figures and summary read."""
        measured = [a for stage in MEASURED_STAGES for a in self.stage(stage)]
        self.tables = self.add(
            "tables",
            {"stages": list(MEASURED_STAGES), "code": presentation_hash("tables.py")},
            {f"{a.stage}/{a.id}": a.id for a in measured},
            {
                "artifacts": [
                    {"stage": a.stage, "id": a.id, "dir": a.dir, "label": a.label} for a in measured
                ],
                "base_eval": self.evals[self.base.key].dir,
            },
            "tables",
        )

    # -- views for the Snakefile -----------------------------------------------------------
    def manifests(self, stage: str | None = None) -> list[str]:
        arts = self.stage(stage) if stage else list(self.artifacts.values())
        return [a.manifest for a in arts]

    def parent_manifests(self, art: Artifact) -> dict[str, str]:
        """Manifests of the artifacts this one reads (external HF models have none)."""
        return {
            role: self.artifacts[pid].manifest
            for role, pid in art.parents.items()
            if pid in self.artifacts
        }


def rl_checkpoints(params: dict[str, Any]) -> list[str]:
    steps, every = params.get("steps", 0), params.get("save_every", 0)
    saved = [f"step-{k}" for k in range(every, steps, every)] if every else []
    return [*saved, "final"]


def surgery_label(entry: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(entry.items()))


def write_spec(art: Artifact, path: str | Path) -> None:
    Path(path).write_text(json.dumps(art.spec(), indent=1, sort_keys=True))
