"""Resume after a kill: every training stage, killed with SIGKILL at a random step of a micro run
and rerun, publishes the weights an uninterrupted run publishes (SHA-256 of every safetensors
file); SIGTERM writes a checkpoint and exits to be resumed; the partial state shows in
`sftrl ls` and goes with `sftrl gc`; every training artifact holds TensorBoard event files that
TensorBoard's own reader reads back."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from rl_helpers import MICRO as PPO_MICRO
from rl_helpers import stage_spec, tiny_game_setup

from sftrl import store
from sftrl.train.resume import EXIT_PREEMPTED, STATE_NAME, complete_checkpoints

SRC = Path(__file__).resolve().parents[1] / "src"
EVERY = {"every_steps": 2, "every_minutes": 0}

SFT = {"batch_size": 4, "lr": 3e-3, "warmup_steps": 2, "epochs": [0.5, 1, 2], "seed": 1}
GRPO = {
    "steps": 10,
    "num_generations": 4,
    "per_device_train_batch_size": 8,
    "lr": 3e-3,
    "temperature": 1.0,
    "max_completion_length": 6,
    "save_every": 4,
    "sft_loss_every": 3,
    "sft_loss_rows": 4,
}
PPO = {**PPO_MICRO, "save_every": 5, "sft_loss_every": 4, "sft_loss_rows": 4}
RLSFT = {"epochs": 1.0, "sft": {"batch_size": 4, "lr": 3e-3}, "track_every": 3, "reward_rows": 4}
PRETRAIN = {
    "steps": 24,
    "batch_size": 8,
    "lr": 2e-3,
    "warmup_steps": 4,
    "model": {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64},
    "corpus": {"n_lines": 200},
}


@pytest.fixture(scope="module")
def game(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data, base, _ = tiny_game_setup(root, n_rl=8, n_sft=32)
    pd.DataFrame({"multiset": ["1 2 3 4"]}).to_parquet(data / "eval_id_unseen.parquet")
    return root, data, base


def job(game, stage: str, params: dict) -> tuple[dict, str]:
    """(spec, log file that grows one line per step) of a micro job of `stage`."""
    _, data, base = game
    inputs = {"data": data, "base_model": base, "start_model": base}
    spec = stage_spec(Path("/unused"), stage, params, inputs)
    log = {"sft": "train_log.jsonl", "rlsft": "train_log.jsonl", "pretrain": "train_log.jsonl"}
    return spec, log.get(stage, "metrics.jsonl")


def start(spec: dict, root: Path) -> subprocess.Popen:
    spec = {**spec, "root": str(root), "checkpointing": EVERY}
    spec_file = root.parent / f"{root.name}-{spec['id']}.json"
    spec_file.write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    cmd = [sys.executable, "-m", "sftrl.jobs", "--spec", str(spec_file)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen, expect: int = 0) -> str:
    out = proc.communicate(timeout=600)[0].decode()
    assert proc.returncode == expect, out[-4000:]
    return out


def lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def interrupt(spec: dict, log: str, root: Path, after: int, sig: int) -> subprocess.Popen:
    """Start the job and send `sig` once its step log holds `after` lines."""
    work = store.resumable_dir(root, spec["stage"], spec["id"])
    proc = start(spec, root)
    while lines(work / log) < after:
        if proc.poll() is not None:
            pytest.fail(f"the job ended before step {after}: {proc.stdout.read().decode()[-3000:]}")
        time.sleep(0.05)
    proc.send_signal(sig)
    return proc


def weights(art: Path) -> dict[str, str]:
    return {
        p.relative_to(art).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(art.rglob("*.safetensors"))
    }


def scalars(art: Path, tag: str) -> list:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(art / "tensorboard"))
    events.Reload()
    return events.Scalars(tag)


CASES = {
    "pretrain": PRETRAIN,
    "sft": SFT,
    "ppo": {**PPO, "algorithm": "ppo"},
    "grpo": {**GRPO, "algorithm": "grpo"},
    "rlsft": RLSFT,
}
STEPS = {"pretrain": 24, "sft": 16, "ppo": 12, "grpo": 10, "rlsft": 8}


@pytest.mark.parametrize("name", list(CASES))
def test_sigkill_at_a_random_step_then_rerun_publishes_the_uninterrupted_weights(
    game, tmp_path, name
):
    stage = name if name in ("pretrain", "sft", "rlsft") else "rl"
    spec, log = job(game, stage, CASES[name])
    finish(start(spec, tmp_path / "straight"))
    reference = tmp_path / "straight" / stage / spec["id"]

    after = random.Random(name).randint(EVERY["every_steps"] + 1, STEPS[name] - 1)
    root = tmp_path / "killed"
    finish(interrupt(spec, log, root, after, signal.SIGKILL), expect=-signal.SIGKILL)
    work = store.resumable_dir(root, stage, spec["id"])
    assert not (root / stage / spec["id"] / "manifest.json").exists()
    assert complete_checkpoints(work / store.RESUME_STATE_DIR), "killed before any checkpoint"

    out = finish(start(spec, root))
    assert "resuming from the checkpoint at step" in out
    art = root / stage / spec["id"]
    assert not work.exists() and not store.verify(art)
    assert weights(art) == weights(reference) and weights(art)
    assert lines(art / log) == lines(reference / log)  # no step logged twice
    assert not any(p.name == store.RESUME_STATE_DIR for p in art.rglob("*"))
    # the curve, read by TensorBoard from the killed try's events file and the resumed one's
    tag = f"{Path(log).stem}/{'reward' if stage == 'rl' else 'loss'}"
    steps = [event.step for event in scalars(art, tag)]
    assert (
        steps == [event.step for event in scalars(reference, tag)] == list(range(1, len(steps) + 1))
    )


def test_sigterm_writes_a_checkpoint_and_exits_to_be_resumed(game, tmp_path):
    spec, log = job(game, "sft", SFT)
    root = tmp_path / "store"
    proc = interrupt(spec, log, root, 3, signal.SIGTERM)
    out = finish(proc, expect=EXIT_PREEMPTED)
    assert "checkpoint at the next step" in out
    work = store.resumable_dir(root, "sft", spec["id"])
    done = complete_checkpoints(work / store.RESUME_STATE_DIR)
    state = json.loads((done[-1][1] / STATE_NAME).read_text())
    assert state["step"] >= 3 and state["total"] == STEPS["sft"]

    (entry,) = store.list_artifacts(root)
    assert entry["kind"] == "partial" and not entry["running"]
    assert f"checkpoint at step {state['step']}/{STEPS['sft']}" in entry["note"]
    assert store.gc(root, keep_ids=[], stale_after=3600) == []  # fresh: kept
    (doomed,) = store.gc(root, keep_ids=[], stale_after=0)
    assert doomed["path"] == str(work) and work.exists()  # dry run

    finish(start(spec, root))
    assert store.list_artifacts(root)[0]["status"] == "complete"


def test_curves_hold_the_logged_values(game, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spec, log = job(game, "sft", SFT)
    finish(start(spec, tmp_path))
    art = tmp_path / "sft" / spec["id"]
    events = EventAccumulator(str(art / "tensorboard"))
    events.Reload()
    expected = {
        "train_log/loss",
        "train_log/lr",
        "train_log/grad_norm",
        "heldout_loss/heldout_loss",
    }
    assert expected <= set(events.Tags()["scalars"])
    losses = [json.loads(line)["loss"] for line in (art / log).read_text().splitlines()]
    read = [e.value for e in events.Scalars("train_log/loss")]
    assert read == pytest.approx(losses, rel=1e-6) and len(read) == STEPS["sft"]
    files = json.loads((art / "manifest.json").read_text())["files"]
    assert any(rel.startswith("tensorboard/events.out.tfevents.") for rel in files)


def test_opt_in_wandb_run_is_offline_and_named_by_the_artifact_id(game, tmp_path):
    spec, _ = job(game, "sft", SFT)
    logs = tmp_path / "logs"
    finish(
        start(
            {**spec, "logging": {"report_to": ["wandb"], "project": "t", "dir": str(logs)}},
            tmp_path / "store",
        )
    )
    (run_file,) = logs.glob(f"wandb/offline-run-*/run-{spec['id']}.wandb")
    content = run_file.read_bytes()
    assert b"train_log/loss" in content and b"heldout_loss/heldout_loss" in content
    assert (tmp_path / "store" / "sft" / spec["id"] / "manifest.json").is_file()
    assert not list((tmp_path / "store").rglob("*.wandb"))  # never inside the artifact


def test_a_tracker_that_is_not_installed_is_named_at_plan_time(monkeypatch):
    import importlib.util

    from sftrl.checks import plan_problems
    from sftrl.config import DEFAULT_CONFIG, load_config

    config = load_config(DEFAULT_CONFIG, overrides={"logging": {"report_to": ["wandb"]}})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n: None if n == "wandb" else real(n))
    assert any("logging.report_to = 'wandb'" in p for p in plan_problems(config))
