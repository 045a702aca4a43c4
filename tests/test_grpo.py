"""GRPO/RLOO through TRL: reward plumbing, a micro run that learns a toy task, outputs."""

import json

import pytest
from rl_helpers import TOY_ROWS, first_word_is_a, stage_spec, tiny_game_setup, toy_policy

from sftrl import jobs
from sftrl.train import grpo, rl_common

MICRO = dict(
    steps=30,
    num_generations=4,
    per_device_train_batch_size=16,
    lr=1e-2,
    max_completion_length=4,
    save_every=0,
    sft_loss_every=0,
)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_reward_func_rebuilds_rows_and_logs_success():
    seen, logged = [], {}

    def reward_fn(texts, rows):
        seen.extend(rows)
        return [float(len(t)) for t in texts], [t == "ab" for t in texts]

    func = grpo.make_reward_func(reward_fn, ["cards", "rule"])
    out = func(
        ["p1", "p2"],
        ["ab", "c"],
        cards=[["A"], ["K"]],
        rule=["r1", "r2"],
        completion_ids=[[1], [2]],
        trainer_state=None,
        log_metric=lambda k, v: logged.__setitem__(k, v),
    )
    assert out == [2.0, 1.0]
    assert seen == [{"cards": ["A"], "rule": "r1"}, {"cards": ["K"], "rule": "r2"}]
    assert logged == {"success": 0.5}


def test_prompts_per_step_checks_divisibility():
    assert (
        grpo.prompts_per_step(
            {"per_device_train_batch_size": 64, "grad_accum": 2, "num_generations": 8}
        )
        == 16
    )
    with pytest.raises(ValueError):
        grpo.prompts_per_step(
            {"per_device_train_batch_size": 6, "grad_accum": 1, "num_generations": 4}
        )


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_micro_run_raises_reward(algorithm):
    model, tok = toy_policy()
    summary = grpo.train_grpo(
        model, tok, TOY_ROWS, first_word_is_a, {**MICRO, "algorithm": algorithm}
    )
    assert summary["steps"] == MICRO["steps"]
    assert summary["reward_first"] < 0.3
    assert summary["reward_last"] >= summary["reward_first"] + 0.3


def test_grpo_writes_metrics_checkpoints_and_sft_loss(tmp_path):
    import pandas as pd

    data = tmp_path / "data"
    data.mkdir()
    pd.DataFrame({"prompt": ["go b"], "completion": ["a a"]}).to_parquet(
        data / "sft_heldout.parquet"
    )
    out = tmp_path / "run"
    out.mkdir()
    model, tok = toy_policy()
    probe = rl_common.SftLossTracker(data, out, n_rows=1)
    grpo.train_grpo(
        model,
        tok,
        TOY_ROWS,
        first_word_is_a,
        {**MICRO, "steps": 3, "save_every": 2, "sft_loss_every": 2},
        out,
        lambda step, m: probe.measure(m, tok, "policy", step),
    )
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3]
    for key in ("reward", "success", "entropy", "seconds_rollout", "seconds_learn"):
        assert all(key in r for r in lines), key
    assert all(r["reward_kind"] == "published" for r in lines)
    assert (out / "step-2" / "config.json").exists() and (out / "final" / "config.json").exists()
    losses = [json.loads(x) for x in (out / "sft_loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in losses] == [0, 2, 3]


def test_grpo_stage_writes_a_complete_artifact(tmp_path):
    data, base, _ = tiny_game_setup(tmp_path)
    params = {
        **grpo.DEFAULT_PARAMS,
        "algorithm": "rloo",
        "steps": 2,
        "num_generations": 2,
        "per_device_train_batch_size": 4,
        "max_completion_length": 6,
        "save_every": 1,
        "sft_loss_every": 1,
        "reward": "success",
    }
    spec = stage_spec(
        tmp_path, "rl", params, {"start_model": base, "base_model": base, "data": data}
    )
    jobs.main(["--spec", json.dumps(spec)])
    art = tmp_path / "results" / "rl" / spec["id"]
    assert (art / "manifest.json").exists() and (art / "step-1").is_dir()
    assert (art / "final" / "model.safetensors").exists() and not (art / "step-2").exists()
    lines = [json.loads(x) for x in (art / "metrics.jsonl").read_text().splitlines()]
    assert all(r["reward_kind"] == "success" and r["algorithm"] == "rloo" for r in lines)
    assert all(0 <= r["reward"] <= 1 for r in lines)
    losses = [json.loads(x) for x in (art / "sft_loss.jsonl").read_text().splitlines()]
    assert [r["model"] for r in losses] == ["base", "start", "policy", "policy"]
