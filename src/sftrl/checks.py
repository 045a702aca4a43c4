"""Plan-time checks: what a schema-valid config implies, checked before any job runs.

JSON Schema checks each value on its own. These checks combine values the way the stages will:
the tiny model's widths and depth, the batch arithmetic of PPO and GRPO/RLOO, the hands each
rule can deal, which data and evaluation splits exist, k fractions, module filters against the
tiny model's tensor names, layer ranges against its depth, the HF model path. Each problem
names the config key. `config.validate_config` calls `plan_problems` after the schema passes.

Each rule lives where the stage applies it (the split names in `sftrl.data`, k specs in
`sftrl.spectrum`, layer selections in `sftrl.surgery`, the corpus options in `sftrl.corpus`);
this module calls those with the config's values. The plan must not import torch (every
`snakemake` call runs it), so the GRPO batch rule is restated here, kept equal by a test.
"""

from __future__ import annotations

import json
import re
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

# The reported OOD split: recovery, tables and figures read it.
OOD_SPLIT = "ood"
# Solving every hand of a 6-card rule takes minutes: the data stage does it, the plan does not.
MAX_PLAN_CARDS = 5


class ConfigWarning(UserWarning):
    """A config that runs, but likely not as meant (e.g. evaluation sets of duplicates)."""


def plan_problems(config: dict[str, Any]) -> list[str]:
    """Every problem of a schema-valid config, one string each, naming the key; warns as well."""
    problems: list[str] = []
    for check in (
        _model,
        _hf_path,
        _corpus,
        _batches,
        _decoding,
        _rules,
        _splits,
        _k_specs,
        _layers,
        _modules,
        _reporters,
        _multi_try_context,
    ):
        problems += check(config)
    return problems


def _multi_try_context(config: dict) -> list[str]:
    """Multi-try transcripts (PPO episodes, 5-try evaluation) must fit the tiny model."""
    from sftrl.config import ConfigError
    from sftrl.train.rl_common import check_multi_try_context

    tries = config["rl"]["ppo"].get("max_tries", 1)
    if tries == 1 and not config["eval"]["multi_try"]["enabled"]:
        return []
    try:
        check_multi_try_context(config)
    except ConfigError as err:
        return [str(err)]
    return []


def _reporters(config: dict) -> list[str]:
    """An opt-in tracker must be installed before a day of training finds out it is not."""
    import importlib.util

    return [
        f"config key logging.report_to = {name!r}: the package is not installed "
        f"(pip install 'sftrl[{name}]')"
        for name in config["logging"]["report_to"]
        if importlib.util.find_spec(name) is None
    ]


# ---------------------------------------------------------------------------- model


def _model(config: dict) -> list[str]:
    if config["model"]["source"] != "tiny":
        return []
    tiny = config["model"]["tiny"]
    hidden, heads = tiny["hidden_size"], tiny["num_heads"]
    if hidden % heads:
        return [
            f"config key model.tiny.num_heads = {heads}: must divide model.tiny.hidden_size "
            f"= {hidden}"
        ]
    if (hidden // heads) % 2:
        # rotary embeddings rotate pairs of dimensions
        return [
            f"config key model.tiny.hidden_size = {hidden}: hidden_size / num_heads = "
            f"{hidden // heads} must be even (rotary embeddings)"
        ]
    return []


def _hf_path(config: dict) -> list[str]:
    path = config["model"]["hf_path"]
    if config["model"]["source"] != "hf" or not path:
        return []
    if Path(path).expanduser().is_dir():
        if not (Path(path).expanduser() / "config.json").is_file():
            return [f"config key model.hf_path = {path!r}: the directory has no config.json"]
        return []
    if _looks_local(path) or not _is_hub_id(path):
        return [
            f"config key model.hf_path = {path!r}: no such local directory, and not a hub id "
            "(owner/name)"
        ]
    return []


def _looks_local(path: str) -> bool:
    return path.startswith(("/", "./", "../", "~"))


def _is_hub_id(path: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(path)
    except HFValidationError:
        return False
    return True


def model_depth(config: dict) -> int | None:
    """Decoder layers of the model the plan trains (None: an HF model not on this machine)."""
    model = config["model"]
    if model["source"] == "tiny":
        return model["tiny"]["num_layers"]
    hf_config = _hf_config(model["hf_path"])
    if hf_config is None:
        return None
    text = hf_config.get("text_config") or {}
    return hf_config.get("num_hidden_layers") or text.get("num_hidden_layers")


def _hf_config(path: str) -> dict | None:
    local = Path(path).expanduser() / "config.json"
    if not local.is_file():
        if _looks_local(path) or not _is_hub_id(path):
            return None
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(path, "config.json")
        if not isinstance(cached, str):
            return None
        local = Path(cached)
    try:
        return json.loads(local.read_text())
    except (OSError, ValueError):
        return None


def _corpus(config: dict) -> list[str]:
    """The pre-training corpus sampler's own checks, run on the config's options."""
    if config["model"]["source"] != "tiny":
        return []
    from sftrl.corpus import CorpusSampler

    pretrain = config["pretrain"]
    options = {k: v for k, v in pretrain["corpus"].items() if k != "n_lines"}
    try:
        CorpusSampler(config["seed"], **options)
    except ValueError as exc:
        return [f"config key pretrain.corpus: {exc}"]
    n_lines = pretrain["corpus"]["n_lines"]
    if n_lines is not None and n_lines < pretrain["batch_size"]:
        return [
            f"config key pretrain.corpus.n_lines = {n_lines}: fewer lines than "
            f"pretrain.batch_size = {pretrain['batch_size']}"
        ]
    return []


# ---------------------------------------------------------------------------- batches


def grpo_group_problem(params: dict, world_size: int) -> str | None:
    """GRPO/RLOO's batch rule: the completions of one step hold whole groups. The same rule as
    `sftrl.train.grpo.prompts_per_step` (a test keeps them equal), without importing torch:
    every `snakemake` call runs the plan."""
    completions = params["per_device_train_batch_size"] * params["grad_accum"] * world_size
    if completions % params["num_generations"]:
        return (
            f"per_device_train_batch_size {params['per_device_train_batch_size']} x grad_accum "
            f"{params['grad_accum']} x world size {world_size} = {completions} completions per "
            f"step is not a multiple of num_generations {params['num_generations']}"
        )
    return None


def _batches(config: dict) -> list[str]:
    resources = config["resources"]
    world_size = max(1, resources.get("rl", {}).get("gpu", resources["default"]["gpu"]))
    problems = []
    if "ppo" in config["rl"]["algorithms"]:
        # PPO's update loop takes whole minibatches: a remainder of the rollout is never trained on
        ppo = config["rl"]["ppo"]
        rollout, minibatch = ppo["rollout_batch_size"], ppo["minibatch_size"]
        if rollout % minibatch:
            problems.append(
                f"config key rl.ppo.minibatch_size = {minibatch}: must divide "
                f"rl.ppo.rollout_batch_size = {rollout}"
            )
    for algorithm in ("grpo", "rloo"):
        params = config["rl"][algorithm]
        problem = grpo_group_problem(params, world_size)
        if algorithm in config["rl"]["algorithms"] and problem:
            problems.append(
                f"config key rl.{algorithm}.num_generations = {params['num_generations']}: "
                f"{problem}"
            )
    return problems


def _decoding(config: dict) -> list[str]:
    decoding = config["eval"]["decoding"]
    if decoding["temperature"] == 0 and decoding["n"] > 1:
        warnings.warn(
            f"config key eval.decoding.n = {decoding['n']}: greedy decoding (temperature 0) "
            "gives the same answer n times",
            ConfigWarning,
            stacklevel=2,
        )
    return []


# ---------------------------------------------------------------------------- rules and hands


def _rules(config: dict) -> list[str]:
    from sftrl.data import SELECT_SPLIT, id_hand_counts, ood_halves, peak_split, split_multisets
    from sftrl.game import Rule

    game, data = config["game"], config["data"]
    rules, problems = {}, []
    for name, fields in game["rules"].items():
        try:
            rules[name] = Rule.from_config({"name": name, **fields})
        except ValueError as exc:
            problems.append(f"config key game.rules.{name}: {exc}")
    train, ood = rules.get(game["train_rule"]), rules.get(game["ood_rule"])
    if train is None or ood is None or max(train.n_cards, ood.n_cards) > MAX_PLAN_CARDS:
        return problems

    train_counts, ood_counts = id_hand_counts(train), id_hand_counts(ood)
    train_key = f"game.rules.{game['train_rule']}"
    if len(train_counts) < 2:
        # one multiset cannot be split into seen (training) and unseen (evaluation)
        return [
            *problems,
            f"config key {train_key} = {game['rules'][game['train_rule']]}: deals "
            f"{len(train_counts)} solvable value multiset(s); the seen/unseen split needs >= 2",
        ]
    if not ood_counts:
        return [
            *problems,
            f"config key game.rules.{game['ood_rule']} = {game['rules'][game['ood_rule']]}: "
            "deals no solvable hand",
        ]
    seen, unseen = split_multisets(list(train_counts), data["unseen_fraction"], config["seed"])
    if not seen:
        problems.append(
            f"config key data.unseen_fraction = {data['unseen_fraction']}: holds out every one "
            f"of the {len(train_counts)} solvable multisets of {train_key}; none left to train on"
        )
    # split -> (hands it can hold, the key that sizes it)
    pools = {
        "eval_id_seen": (sum(train_counts[k] for k in seen), "eval_hands"),
        "eval_id_unseen": (sum(train_counts[k] for k in unseen), "eval_hands"),
        "eval_ood": (sum(ood_counts.values()), "eval_hands"),
    }
    if peak_split(data) == SELECT_SPLIT:
        if len(ood_counts) < 2:
            return [
                *problems,
                f"config key data.ood_selection = 'split': game.rules.{game['ood_rule']} deals "
                f"{len(ood_counts)} solvable value multiset(s); halving them needs >= 2",
            ]
        report, select = ood_halves(list(ood_counts), config["seed"])
        pools["eval_ood"] = (sum(ood_counts[k] for k in report), "eval_hands")
        pools[f"eval_{SELECT_SPLIT}"] = (sum(ood_counts[k] for k in select), "select_hands")
    for split, (distinct, key) in pools.items():
        if distinct < data[key]:
            warnings.warn(
                f"config key data.{key} = {data[key]}: split {split} can hold "
                f"only {distinct} distinct hands, so it will contain duplicates",
                ConfigWarning,
                stacklevel=2,
            )
    return problems


# ---------------------------------------------------------------------------- splits


def _splits(config: dict) -> list[str]:
    from sftrl.data import SPLITS

    eval_splits = [s.removeprefix("eval_") for s in SPLITS if s.startswith("eval_")]
    problems = []
    requested = config["eval"]["splits"]
    unknown = [s for s in requested if s not in eval_splits]
    if unknown:
        problems.append(
            f"config key eval.splits = {requested}: unknown {unknown} (splits: {eval_splits})"
        )
    if OOD_SPLIT not in requested:
        problems.append(
            f"config key eval.splits = {requested}: must include {OOD_SPLIT!r} (the OOD "
            "results, surgery recovery and, with data.ood_selection: reported, the OOD-peak "
            "pick read it)"
        )
    split = config["rlsft"]["reward_split"]
    if split not in SPLITS:
        problems.append(
            f"config key rlsft.reward_split = {split!r}: no such data split (splits: "
            f"{list(SPLITS)})"
        )
    return problems


# ---------------------------------------------------------------------------- k, layers, modules


def _surgery_entries(config: dict) -> list[tuple[str, int, dict]]:
    """(method, index, entry) of every configured surgery entry, whatever its method."""
    return [
        (method, i, entry)
        for method, entries in config["surgery"].items()
        for i, entry in enumerate(entries)
    ]


def _k_specs(config: dict) -> list[str]:
    from sftrl.weights import check_k

    specs = [("spectrum.k", config["spectrum"]["k"], False)]
    for method, i, entry in _surgery_entries(config):
        specs += [
            (f"surgery.{method}.{i}.{end}", entry[end], True)
            for end in ("top", "tail")
            if end in entry
        ]
    problems = []
    for key, value, allow_zero in specs:
        try:
            check_k(value, name=key, allow_zero=allow_zero)
        except (TypeError, ValueError) as exc:
            problems.append(f"config key {exc}")
    return problems


_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*$")


def _layers(config: dict) -> list[str]:
    from sftrl.weights import parse_layers

    depth = model_depth(config)
    if depth is None:
        return []
    problems = []
    for i, entry in enumerate(config["surgery"]["reset"]):
        key, layers = f"surgery.reset.{i}.layers", entry["layers"]
        problem = _range_problem(layers, depth)
        if problem is None:
            try:
                if not parse_layers(layers, depth):
                    problem = "selects no layer (a reversed or empty range?)"
            except (TypeError, ValueError) as exc:
                problem = str(exc)
        if problem:
            problems.append(
                f"config key {key} = {layers!r}: {problem} (the model has {depth} layers)"
            )
    return problems


def _range_problem(layers: Any, depth: int) -> str | None:
    """Ranges checked on their ends, before `parse_layers` lists a possibly huge range."""
    parts = layers.split(",") if isinstance(layers, str) else []
    for part in parts:
        match = _RANGE.match(part)
        if not match:
            continue
        low, high = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if high < low:
            return f"reversed range {part.strip()!r}"
        if high >= depth:
            return f"range {part.strip()!r} reaches beyond the last layer {depth - 1}"
    return None


def _modules(config: dict) -> list[str]:
    filters = [("spectrum.modules", config["spectrum"]["modules"])]
    filters += [
        (f"surgery.{method}.{i}.modules", entry.get("modules"))
        for method, i, entry in _surgery_entries(config)
    ]
    filters = [(key, patterns) for key, patterns in filters if patterns]
    if not filters or config["model"]["source"] != "tiny":
        return []  # an HF model's tensor names are checked by the job that loads it
    names = tiny_matrix_names(tuple(sorted(config["model"]["tiny"].items())))
    problems = []
    for key, patterns in filters:
        for j, pattern in unmatched_patterns(patterns, names):
            problems.append(
                f"config key {key}.{j} = {pattern!r}: matches no 2-D tensor of the tiny model "
                f"(e.g. {names[1]}, {names[-1]})"
            )
    return problems


def unmatched_patterns(patterns: list[str], names: list[str]) -> list[tuple[int, str]]:
    """(index, pattern) of each module filter that matches none of the tensor `names`: for
    jobs that load an HF model, whose names the plan cannot know."""
    from sftrl.weights import module_filter

    return [(j, p) for j, p in enumerate(patterns) if not any(map(module_filter([p]), names))]


@lru_cache(maxsize=4)
def tiny_matrix_names(sizes: tuple[tuple[str, int | str], ...]) -> list[str]:
    """Names of the 2-D tensors of the tiny model of these `model.tiny` settings (as sorted
    items), built on the meta device: no weights are allocated."""
    import torch

    from sftrl.modeling import build_tiny_model, build_tokenizer

    tiny = dict(sizes)
    tokenizer = build_tokenizer([], number_tokens=tiny.get("number_tokens", "word"))
    with torch.device("meta"):
        model = build_tiny_model(tokenizer, **tiny)
    return [name for name, tensor in model.state_dict().items() if tensor.ndim == 2]
