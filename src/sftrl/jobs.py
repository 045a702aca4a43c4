"""Run one stage of the workflow from its job spec.

Every rule ends here: `script:` rules through workflow/scripts/run_stage.py, training rules
through `python -m sftrl.jobs --spec JSON` (which also runs under `accelerate launch`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from sftrl import set_offline_env

# stage -> module holding `run(spec)`; RL dispatches on its algorithm param.
STAGE_MODULES = {
    "data": "sftrl.data",
    "convert": "sftrl.mllama",
    "pretrain": "sftrl.train.pretrain",
    "sft": "sftrl.train.sft",
    "eval": "sftrl.evaluate",
    "rlsft": "sftrl.train.rlsft",
    "spectrum": "sftrl.spectrum",
    "surgery": "sftrl.surgery",
    "tables": "sftrl.tables",
}
RL_MODULES = {"ppo": "sftrl.train.ppo", "grpo": "sftrl.train.grpo", "rloo": "sftrl.train.grpo"}


def stage_module(spec: dict[str, Any]) -> str:
    if spec["stage"] == "rl":
        return RL_MODULES[spec["params"]["algorithm"]]
    return STAGE_MODULES[spec["stage"]]


def select_checkpoint(select: dict[str, Any], eval_dir: str | Path) -> str:
    """The checkpoint (sub-directory) an evaluation ranks first under `select["rule"]`.

    "ood_peak": highest success on `select["split"]`; ties go to the earliest checkpoint.
    """
    if select["rule"] != "ood_peak":
        raise ValueError(f"unknown checkpoint selection rule {select['rule']!r}")
    summary = json.loads((Path(eval_dir) / "summary.json").read_text())
    split = select["split"]
    best, best_success = None, -1.0
    for sub, by_split in summary["models"].items():  # insertion order = training order
        success = by_split["splits"][split]["success"]["rate"]
        if success > best_success:
            best, best_success = sub, success
    if best is None:
        raise ValueError(f"evaluation {eval_dir} holds no checkpoint to select from")
    return best


def resolve_selections(spec: dict[str, Any]) -> dict[str, Any]:
    """Replace run-time model choices in `inputs` by concrete checkpoint directories."""
    inputs = dict(spec["inputs"])
    resolved = {}
    for role, value in spec["params"].items():
        if not (isinstance(value, dict) and value.get("select")):
            continue
        sub = select_checkpoint(value["select"], inputs[f"{role}_eval"])
        inputs[role] = str(Path(inputs[role]) / sub)
        resolved[role] = sub
    return {**spec, "inputs": inputs, "resolved": resolved}


def run_stage(spec: dict[str, Any]) -> None:
    threads = spec.get("threads")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    spec = resolve_selections(spec)
    importlib.import_module(stage_module(spec)).run(spec)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sftrl.jobs", description=__doc__)
    parser.add_argument("--spec", required=True, help="job spec: JSON text or a JSON file")
    args = parser.parse_args(argv)
    set_offline_env()
    from sftrl.train.common import load_spec
    from sftrl.train.resume import EXIT_PREEMPTED, Preempted

    try:
        run_stage(load_spec(args.spec))
    except Preempted as stop:  # checkpoint written: SLURM requeue or a rerun continues
        print(f"sftrl: {stop}; exit {EXIT_PREEMPTED} to be resumed", file=sys.stderr, flush=True)
        sys.exit(EXIT_PREEMPTED)


if __name__ == "__main__":
    main()
