"""The RL -> SFT branch: SFT from an RL result with the reward tracked along the way."""

import json

import pytest
from rl_helpers import stage_spec, tiny_game_setup

from sftrl import jobs
from sftrl.train import rlsft

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_rlsft_tracks_reward_and_saves_final(tmp_path):
    data, start, _ = tiny_game_setup(tmp_path, n_sft=8)
    params = {
        **rlsft.DEFAULT_PARAMS,
        "epochs": 1.0,
        "track_every": 1,
        "reward_rows": 4,
        "max_new_tokens": 8,
        "sft": {"batch_size": 4, "lr": 1e-3, "warmup_steps": 0},
    }
    spec = stage_spec(tmp_path, "rlsft", params, {"start_model": start, "data": data})
    jobs.main(["--spec", json.dumps(spec)])
    art = tmp_path / "results" / "rlsft" / spec["id"]
    assert (art / "final" / "model.safetensors").exists() and (art / "manifest.json").exists()
    assert not list(art.glob("epoch-*"))
    lines = [json.loads(x) for x in (art / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [0, 1, 2]  # before SFT, then every step (8 rows / 4)
    assert all(set(r) >= {"reward", "success", "epoch"} for r in lines)
    assert all(-20 <= r["reward"] <= 5 and 0 <= r["success"] <= 1 for r in lines)
    summary = json.loads((art / "manifest.json").read_text())["summary"]
    assert summary["reward_start"] == lines[0]["reward"]
    assert summary["reward_final"] == lines[-1]["reward"]
