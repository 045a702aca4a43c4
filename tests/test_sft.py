"""Micro SFT runs: every configured epoch is saved, held-out loss logged, runs bit-identical."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from sftrl.game import RULES, card_values, render_completion, render_prompt, sample_hand, solve
from sftrl.modeling import build_tiny_model, build_tokenizer, load_model, load_tokenizer, save_model
from sftrl.train.sft import (
    encode_row,
    epoch_tag,
    save_points,
    save_steps_for_epochs,
    sft_loss,
    steps_per_epoch,
    train_sft,
)

MICRO = {
    "batch_size": 16,
    "lr": 3e-3,
    "warmup_steps": 2,
    "seed": 1,
    "data_seed": 1,
    "epochs": [0.5, 1, 2],
}


def make_rows(n: int, seed: int) -> list[dict]:
    rng, rule = random.Random(seed), RULES["id"]
    rows = []
    for _ in range(n):
        cards = sample_hand(rng, rule)
        formula = solve(card_values(cards, rule), rule.target)
        rows.append(
            {
                "prompt": render_prompt(cards, rule),
                "completion": render_completion(cards, rule, formula),
            }
        )
    return rows


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    train, heldout = make_rows(64, 0), make_rows(16, 1)
    tok = build_tokenizer([r[k] for r in train + heldout for k in ("prompt", "completion")])
    model = build_tiny_model(
        tok,
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
        seed=0,
    )
    base = save_model(model, tok, root / "base")
    return root, base, train, heldout


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_epoch_mapping():
    assert epoch_tag(0.5) == "epoch-0.5" and epoch_tag(2) == "epoch-2"
    assert steps_per_epoch(64, 16) == 4 and steps_per_epoch(65, 16) == 5
    assert save_steps_for_epochs([0.25, 0.5, 1, 2], 10) == {2: 0.25, 5: 0.5, 10: 1.0, 20: 2.0}
    assert save_steps_for_epochs([0.01, 0], 10) == {0: 0.0, 1: 0.01}
    assert save_points([1], [3, 10], 10) == {3: ("step-3", 0.3), 10: ("epoch-1", 1.0)}


def test_encode_row_masks_prompt(setup):
    _, base, train, _ = setup
    tok = load_tokenizer(base)
    ids, n_prompt = encode_row(tok, train[0]["prompt"], train[0]["completion"])
    assert ids[-1] == tok.eos_token_id and tok.unk_token_id not in ids
    assert tok.decode(ids[n_prompt:], skip_special_tokens=True) == train[0]["completion"]


def test_micro_sft_saves_every_epoch_and_is_deterministic(setup):
    root, base, train, heldout = setup
    runs = []
    for name in ("a", "b"):
        summary = train_sft(base, train, root / name, params=MICRO, heldout_rows=heldout)
        runs.append(root / name)
    assert summary["steps"] == 8 and summary["saved"] == ["epoch-0.5", "epoch-1", "epoch-2"]
    for run in runs:
        for e in MICRO["epochs"]:
            assert (run / epoch_tag(e) / "model.safetensors").is_file()
            assert (run / epoch_tag(e) / "tokenizer.json").is_file()
        assert not (run / "_trainer").exists()
    log = [json.loads(x) for x in (runs[0] / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 9))
    held = [json.loads(x) for x in (runs[0] / "heldout_loss.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in held] == [0.5, 1.0, 2.0]
    assert held[-1]["heldout_loss"] < held[0]["heldout_loss"]
    for e in MICRO["epochs"]:
        tag = epoch_tag(e)
        assert sha256(runs[0] / tag / "model.safetensors") == sha256(
            runs[1] / tag / "model.safetensors"
        )

    # sft_loss agrees with the logged held-out loss and falls with training
    tuned = load_model(runs[0] / "epoch-2", device="cpu")
    tok = load_tokenizer(runs[0] / "epoch-2")
    assert sft_loss(tuned, tok, heldout, batch_size=5) == pytest.approx(
        held[-1]["heldout_loss"], rel=1e-5
    )
    assert sft_loss(tuned, tok, train) < sft_loss(load_model(base, device="cpu"), tok, train)


def test_lora_and_step_save_points(setup):
    root, base, train, _ = setup
    calls = []
    params = {**MICRO, "lora": {"r": 4, "alpha": 8}}

    def eval_fn(**kw):
        calls.append((kw["checkpoint"], kw["step"]))

    summary = train_sft(
        base,
        train[:32],
        root / "lora",
        params=params,
        save_at_epochs=[],
        save_at_steps=[1, 2],
        eval_fn=eval_fn,
    )
    assert summary["saved"] == ["step-1", "step-2"] and calls == [("step-1", 1), ("step-2", 2)]
    # saved as a plain merged model that differs from the base
    import torch

    merged = load_model(root / "lora" / "step-2", device="cpu")
    before = load_model(base, device="cpu")
    assert type(merged).__name__ == "LlamaForCausalLM"
    q_after = merged.model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(q_after, before.model.layers[0].self_attn.q_proj.weight)


def test_stage_entry_point(setup, tmp_path):
    import pandas as pd

    from sftrl.jobs import main
    from sftrl.store import artifact_id, read_manifest, verify

    _, base, train, heldout = setup
    data = tmp_path / "data"
    data.mkdir()
    pd.DataFrame(train[:32]).to_parquet(data / "sft_train.parquet")
    pd.DataFrame(heldout).to_parquet(data / "sft_heldout.parquet")
    params = {**MICRO, "epochs": [1]}
    parents = {"data": "0" * 16, "base": "1" * 16}
    spec = {
        "stage": "sft",
        "id": artifact_id("sft", params, parents),
        "params": params,
        "parents": parents,
        "inputs": {"data": str(data), "base_model": str(base)},
        "root": str(tmp_path / "results"),
    }
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    main(["--spec", str(spec_file)])
    out = tmp_path / "results" / "sft" / spec["id"]
    assert verify(out) == [] and (out / "epoch-1" / "model.safetensors").is_file()
    assert read_manifest(out)["summary"]["saved"] == ["epoch-1"]
    assert len((out / "heldout_loss.jsonl").read_text().splitlines()) == 1
