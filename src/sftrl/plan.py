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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sftrl import figures
from sftrl.config import ConfigError, load_schema
from sftrl.data import SELECT_SPLIT, peak_split
from sftrl.distributed import world_size
from sftrl.store import artifact_id, code_fingerprint, presentation_hash
from sftrl.surgery.registry import methods as surgery_methods

# The paper's figures, one rule each: results/figures/<name>.pdf (one module each, no matplotlib)
FIGURES = figures.FIGURES
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
    replicate: int | None = None  # the seed of the chain it belongs to (None: data, tables)

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


@dataclass
class Chain:
    """One replicate's models: what every later stage of that seed starts from."""

    seed: int
    base: ModelRef
    sft: Artifact
    sft_end: ModelRef
    sft_peak: ModelRef
    rl_runs: list[Artifact] = field(default_factory=list)


def replicate_seeds(config: dict[str, Any]) -> list[int]:
    """The replicates' seeds: `seeds`, or the one `seed` (which always seeds the data)."""
    return list(config.get("seeds") or [config["seed"]])


class Plan:
    """Builds every artifact of a validated config in dependency order."""

    def __init__(
        self, config: dict[str, Any], fingerprint: dict | None = None, check_memory: bool = True
    ):
        self.config = config
        self.root = config["results"]
        self.fingerprint = fingerprint if fingerprint is not None else code_fingerprint()
        self.artifacts: dict[str, Artifact] = {}
        self.by_stage: dict[str, list[Artifact]] = {}
        self._build()
        if check_memory:
            self.check_memory()

    def check_memory(self) -> None:
        """Refuse (before any job) a GPU job whose per-GPU estimate exceeds its gpu_mem_gb."""
        from sftrl import memory

        if not memory.needs_check(self.config):
            return  # no GPU stage with a budget: nothing to check (and no model to build)
        over = memory.over_budget(self)
        if over:
            raise ConfigError(memory.refusal(over))

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
        art = Artifact(
            stage, art_id, params, parents, inputs, label, models or [], self.root, self.replicate
        )
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
        self.replicate: int | None = None
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
        self.evals: dict[str, Artifact] = {}
        self.rl_runs: list[Artifact] = []
        self.rlsft_runs: list[Artifact] = []
        self.spectra: list[Artifact] = []
        self.surgeries: list[Artifact] = []
        self.chains = [self._chain(seed) for seed in replicate_seeds(cfg)]
        self.replicate = None
        # the first replicate's models, by name (tests, the memory check, `sftrl plan`)
        first = self.chains[0]
        self.base, self.sft, self.sft_end, self.sft_peak = (
            first.base,
            first.sft,
            first.sft_end,
            first.sft_peak,
        )
        self._tables()

    def _chain(self, seed: int) -> Chain:
        """One replicate: pre-training (or the external model), SFT, RL, RL -> SFT, spectra and
        surgery, every stage seeded with `seed`, on the one data artifact (the hands are the
        design of the experiment, the seeds its replication)."""
        cfg = self.config
        self.replicate = seed
        base = self._base_model(seed)
        if base.key.startswith("hf:"):
            if base.key not in self.evals:
                self.evaluate_external(base)
        else:
            self.evaluate(self.artifacts[base.key])
        sft = self.add(
            "sft",
            self._training(
                "sft",
                {**cfg["sft"], "seed": seed, "model": self._model_params(), **self._rendering()},
            ),
            {"data": self.data.id, "base": base.key},
            {"data": self.data.dir, "base_model": base.path},
            "sft",
            [epoch_name(e) for e in cfg["sft"]["epochs"]],
        )
        peak_on = peak_split(cfg["data"])  # never the reported hands, unless told (data.py)
        self.evaluate(sft, extra_splits=[peak_on] if peak_on == SELECT_SPLIT else [])
        chain = Chain(
            seed,
            base,
            sft,
            self.checkpoint(sft, epoch_name(cfg["sft"]["epochs"][-1])),
            ModelRef(
                sft.id,
                sft.dir,
                "sft ood-peak",
                {"rule": "ood_peak", "eval": self.evals[sft.id].id, "split": peak_on},
            ),
        )
        self._rl(chain)
        self._rlsft(chain)
        self._spectra(chain)
        self._surgery(chain)
        return chain

    def _training(self, stage: str, params: dict[str, Any]) -> dict[str, Any]:
        """A training stage's params with what the number of processes changes: the world
        size, the global batch (examples per optimizer step over all processes) and the
        distributed engine. A 4-GPU and an 8-GPU run never share an id."""
        world = world_size(stage_resources(self.config, stage)["gpu"])
        return {
            **params,
            "world_size": world,
            "global_batch_size": global_batch_size(self.config, stage, params, world),
            "distributed": self.config["distributed"],
        }

    def _rule(self, role: str) -> dict[str, Any]:
        return self.config["game"]["rules"][self.config["game"][role]]

    def _rendering(self, generates: bool = False) -> dict[str, Any]:
        """Params of every stage that renders prompts (models, #11): the prompt format, and the
        generation backend where the stage generates with one (eval, GRPO)."""
        out: dict[str, Any] = {"prompt_format": self.config["model"]["prompt_format"]}
        if generates:
            out["backend"] = self.config["generation"]["backend"]
        return out

    def _model_params(self) -> dict[str, Any]:
        model = self.config["model"]
        return {"source": model["source"], "dtype": model["dtype"]}

    def _base_model(self, seed: int) -> ModelRef:
        model = self.config["model"]
        if model["source"] == "hf" and model["text_only"]:  # models, #11: sftrl.mllama
            convert = self.add(
                "convert",
                {"hf_path": model["hf_path"], "dtype": model["dtype"]},
                {"hf": f"hf:{model['hf_path']}"},
                {},
                "base",
                ["model"],
            )
            return self.checkpoint(convert, "model", "base")
        if model["source"] == "hf":
            return ModelRef(f"hf:{model['hf_path']}", model["hf_path"], "base")
        pretrain = self.add(
            "pretrain",
            self._training(
                "pretrain",
                {**self.config["pretrain"], "seed": seed, "model": model["tiny"]},
            ),
            {"data": self.data.id},
            {"data": self.data.dir},
            "base",
            ["model"],
        )
        return self.checkpoint(pretrain, "model", "base")

    def checkpoint(self, art: Artifact, sub: str, label: str | None = None) -> ModelRef:
        return ModelRef(art.id, art.model_path(sub), label or f"{art.label} {sub}")

    def _eval_params(self) -> dict[str, Any]:
        return {
            **self.config["eval"],
            "reward_mode": self.config["reward"]["mode"],
            # the NLL probe scores the solver's answers in the data's format
            "answer_format": self.config["data"]["answer_format"],
            **self._rendering(generates=True),
        }

    def evaluate(self, art: Artifact, extra_splits: Sequence[str] = ()) -> Artifact:
        """One evaluation artifact per model artifact, covering each checkpoint in it (and
        `extra_splits`: the OOD selection split of the SFT checkpoints)."""
        params = self._eval_params()
        if extra_splits:
            params["splits"] = [*params["splits"], *extra_splits]
        ev = self.add(
            "eval",
            params,
            {"model": art.id, "data": self.data.id},
            {"data": self.data.dir, "models": {m: art.model_path(m) for m in art.models}},
            f"eval {art.label}",
        )
        self.evals[art.id] = ev
        return ev

    def evaluate_external(self, ref: ModelRef) -> Artifact:
        ev = self.add(
            "eval",
            self._eval_params(),
            {"model": ref.key, "data": self.data.id},
            {"data": self.data.dir, "models": {"model": ref.path}},
            f"eval {ref.label}",
        )
        self.evals[ref.key] = ev
        return ev

    def _rl(self, chain: Chain) -> None:
        rl = self.config["rl"]
        starts = rl["start_epochs"] or self.config["sft"]["epochs"]
        for algorithm in rl["algorithms"]:
            algo_params = rl[algorithm]
            for offset in rl["seeds"]:
                seed = chain.seed + offset  # rl.seeds: RL repeats within one replicate
                for epoch in starts:
                    start = epoch_name(epoch)
                    run = self.add(
                        "rl",
                        self._training(
                            "rl",
                            {
                                "algorithm": algorithm,
                                "seed": seed,
                                "start": start,
                                "start_epoch": epoch,
                                "model": self._model_params(),
                                **algo_params,
                                "reward_mode": self.config["reward"]["mode"],
                                **self._rendering(generates=algorithm != "ppo"),
                            },
                        ),
                        {"data": self.data.id, "sft": chain.sft.id, "base": chain.base.key},
                        {
                            "data": self.data.dir,
                            "start_model": chain.sft.model_path(start),
                            "base_model": chain.base.path,
                        },
                        f"{algorithm} from {start} seed {seed}",
                        rl_checkpoints(algo_params),
                    )
                    self.rl_runs.append(run)
                    chain.rl_runs.append(run)
                    self.evaluate(run)

    def _rlsft(self, chain: Chain) -> None:
        """SFT after each RL run from the last SFT epoch, and its no-RL twin: the same extra
        SFT from the SFT checkpoint itself (the control of claim 2 of arXiv 2601.07389: more
        SFT may lower the reward with no RL before it)."""
        cfg = self.config["rlsft"]
        if not cfg.get("enabled", True):
            return
        params = self._training(
            "rlsft",
            {
                **cfg,
                "seed": chain.seed,
                "model": self._model_params(),
                "reward_mode": self.config["reward"]["mode"],
                **self._rendering(),
            },
        )
        start_epoch = self.config["sft"]["epochs"][-1]
        starts = [
            ({"rl": run.id}, run.model_path("final"), run.label)
            for run in chain.rl_runs
            if run.params["start_epoch"] == start_epoch
            and run.params["seed"] == chain.seed + self.config["rl"]["seeds"][0]
        ]
        if starts:
            starts.append(
                ({"sft": chain.sft.id}, chain.sft_end.path, f"no rl ({chain.sft_end.label})")
            )
        for parent, start_model, label in starts:
            branch = self.add(
                "rlsft",
                params,
                {**parent, "data": self.data.id},
                {"data": self.data.dir, "start_model": start_model},
                f"sft after {label}",
                ["final"],
            )
            self.rlsft_runs.append(branch)
            self.evaluate(branch)

    def _spectra(self, chain: Chain) -> None:
        cfg = self.config["spectrum"]
        pairs: list[tuple[ModelRef, ModelRef]] = []
        for epoch in self.config["sft"]["epochs"]:
            pairs.append((chain.base, self.checkpoint(chain.sft, epoch_name(epoch))))
        pairs.append((chain.sft_peak, chain.sft_end))
        for run in chain.rl_runs:
            if run.params["start"] == epoch_name(self.config["sft"]["epochs"][-1]):
                final = self.checkpoint(run, "final")
                pairs.append((chain.sft_end, final))
                pairs.append((chain.base, final))
        self.spectra += [self._pair("spectrum", cfg, ref, tgt) for ref, tgt in pairs]

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

    def _surgery(self, chain: Chain) -> None:
        cfg = self.config["surgery"]
        for method in surgery_methods():
            defaults = surgery_defaults(method)
            for entry in cfg[method]:
                art = self._pair(
                    "surgery",
                    {"method": method, **entry},
                    chain.sft_peak,
                    chain.sft_end,
                    roles=("donor", "recipient"),
                    label=f"{method} {surgery_label(entry, defaults)}",
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
                    {
                        "stage": a.stage,
                        "id": a.id,
                        "dir": a.dir,
                        "label": a.label,
                        "replicate": a.replicate,
                    }
                    for a in measured
                ],
                "base_models": {str(c.seed): c.base.key for c in self.chains},
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


def stage_resources(config: dict[str, Any], stage: str) -> dict[str, Any]:
    """A stage's resources: the config's `resources.default` overridden by its own section."""
    return {**config["resources"]["default"], **config["resources"].get(stage, {})}


def rlsft_sft_params(config: dict[str, Any]) -> dict[str, Any]:
    """The SFT settings of the RL -> SFT branch: `rlsft.sft` over the SFT stage's defaults
    (what sftrl.train.rlsft runs; the schema's defaults equal the module's)."""
    sft = load_schema()["properties"]["sft"]["properties"]
    defaults = {k: v["default"] for k, v in sft.items() if "default" in v}
    return {**defaults, **config["rlsft"]["sft"]}


def global_batch_size(config: dict[str, Any], stage: str, params: dict, world: int) -> int:
    """Examples per optimizer step over all processes; a batch the GPU count cannot form
    fails here, naming the config keys (the plan is built before any job)."""
    gpu_key = f"resources.{stage}.gpu"
    if stage == "pretrain":
        return params["batch_size"] * world
    if stage == "sft":
        total = params["batch_size"] * params["grad_accum"] * world
        wanted = params.get("global_batch_size")
        if wanted is not None and wanted != total:
            raise ConfigError(
                f"config key sft.global_batch_size = {wanted}: sft.batch_size "
                f"{params['batch_size']} x sft.grad_accum {params['grad_accum']} x {gpu_key} "
                f"{world} = {total}; change one of them so the product is {wanted}"
            )
        return total
    if stage == "rlsft":
        sft = rlsft_sft_params(config)
        return sft["batch_size"] * sft["grad_accum"] * world
    if params["algorithm"] == "ppo":  # episodes per optimizer step
        return params["minibatch_size"] * world
    section = f"rl.{params['algorithm']}"
    total = params["per_device_train_batch_size"] * params["grad_accum"] * world
    if total % params["num_generations"]:
        raise ConfigError(
            f"config key {section}.num_generations = {params['num_generations']} must divide "
            f"{section}.per_device_train_batch_size {params['per_device_train_batch_size']} x "
            f"{section}.grad_accum {params['grad_accum']} x {gpu_key} {world} = {total} "
            "(completions per step come in whole groups)"
        )
    return total


def rl_checkpoints(params: dict[str, Any]) -> list[str]:
    steps, every = params.get("steps", 0), params.get("save_every", 0)
    saved = [f"step-{k}" for k in range(every, steps, every)] if every else []
    return [*saved, "final"]


def surgery_defaults(method: str) -> dict[str, Any]:
    """The schema's defaults of one ``surgery.<method>`` entry (filled in by validation)."""
    items = load_schema()["properties"]["surgery"]["properties"][method]["items"]
    return {k: s["default"] for k, s in items["properties"].items() if "default" in s}


def surgery_label(entry: dict[str, Any], defaults: dict[str, Any] | None = None) -> str:
    """``top=0.2 tail=0.1``: the entry's keys, those at their schema default left out, so a
    label reads as the config line (``sftrl plan --find 'uv top=0.2'``)."""
    defaults = defaults or {}
    return " ".join(
        f"{k}={v}" for k, v in sorted(entry.items()) if k not in defaults or defaults[k] != v
    )


def write_spec(art: Artifact, path: str | Path) -> None:
    Path(path).write_text(json.dumps(art.spec(), indent=1, sort_keys=True))
