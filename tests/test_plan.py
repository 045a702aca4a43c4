"""The artifact plan: ids are pure functions of config + code, and changes stay local."""

from pathlib import Path

from sftrl.config import load_config
from sftrl.plan import Plan

ROOT = Path(__file__).resolve().parents[1]
FINGERPRINT = {"code": "fixed", "packages": {}}


def plan(**overrides) -> Plan:
    return Plan(load_config(ROOT / "config.yaml", overrides=overrides), FINGERPRINT)


def ids(p: Plan, stage: str) -> set[str]:
    return {a.id for a in p.stage(stage)}


def test_same_config_same_ids():
    assert set(plan().artifacts) == set(plan().artifacts)


def test_rl_fans_out_over_epochs_algorithms_and_seeds():
    p = plan(rl={"algorithms": ["ppo", "grpo"], "seeds": [0, 1], "start_epochs": None})
    n_epochs = len(p.config["sft"]["epochs"])
    assert len(p.stage("rl")) == n_epochs * 2 * 2
    # every model artifact is evaluated exactly once
    evaluated = {a.parents["model"] for a in p.stage("eval")}
    models = {a.id for s in ("pretrain", "sft", "rl", "surgery", "rlsft") for a in p.stage(s)}
    assert evaluated == models


def test_changing_sft_changes_only_sft_and_downstream():
    a, b = plan(), plan(sft={"epochs": [0.5, 1, 2, 4, 8], "lr": 3e-4})
    assert ids(a, "data") == ids(b, "data")
    assert ids(a, "pretrain") == ids(b, "pretrain")
    assert ids(a, "sft").isdisjoint(ids(b, "sft"))
    assert ids(a, "rl").isdisjoint(ids(b, "rl"))


def test_changing_eval_decoding_reruns_only_evaluations():
    a, b = plan(), plan(eval={"decoding": {"max_new_tokens": 7}})
    for stage in ("data", "pretrain", "sft", "rl", "rlsft"):
        assert ids(a, stage) == ids(b, stage), stage
    assert ids(a, "eval").isdisjoint(ids(b, "eval"))
    # analyses that pick the OOD-peak checkpoint from an evaluation follow it; the rest stay
    fixed = {x.id for x in a.stage("spectrum") if "reference_eval" not in x.parents}
    assert fixed and fixed <= ids(b, "spectrum")


def test_reward_mode_reaches_every_reward_stage_and_only_what_follows():
    a, b = plan(), plan(reward={"mode": "published"})
    for stage in ("data", "pretrain", "sft"):
        assert ids(a, stage) == ids(b, stage), stage
    for stage in ("rl", "rlsft", "eval"):
        assert ids(a, stage).isdisjoint(ids(b, stage)), stage
        assert {x.params["reward_mode"] for x in a.stage(stage)} == {"strict"}
        assert {x.params["reward_mode"] for x in b.stage(stage)} == {"published"}


def test_code_change_changes_every_id():
    a = plan()
    b = Plan(a.config, {"code": "edited", "packages": {}})
    assert set(a.artifacts).isdisjoint(b.artifacts)


def test_ood_peak_choice_depends_on_the_sft_evaluation():
    p = plan()
    peak_to_end = [a for a in p.stage("spectrum") if "ood-peak" in a.label]
    assert len(peak_to_end) == 1
    sft_eval = p.evals[p.sft.id]
    assert peak_to_end[0].parents["reference_eval"] == sft_eval.id


def test_hf_model_source_has_no_pretrain_stage():
    p = plan(model={"source": "hf", "hf_path": "Qwen/Qwen2.5-0.5B"})
    assert not p.stage("pretrain")
    assert p.sft.inputs["base_model"] == "Qwen/Qwen2.5-0.5B"
    assert p.sft.parents["base"] == "hf:Qwen/Qwen2.5-0.5B"


def test_reporting_code_reruns_only_reporting():
    """tables.py is left out of the code fingerprint; the tables stage carries its own hash."""
    from sftrl.store import code_fingerprint, presentation_hash

    assert plan().tables.params["code"] == presentation_hash("tables.py")
    assert "tables.py" not in str(code_fingerprint())


def test_surgery_labels_read_as_the_config_line():
    """Keys at their schema default (filled in by validation) stay out of a surgery's label, so
    `sftrl plan --find 'uv top=0.2'` finds the config line `{top: 0.2}`; set keys stay in."""
    uv = [{"top": 0.2}, {"top": 1.0, "full_rank": "recipient_values"}]
    p = plan(surgery={"uv": uv, "uv_random": [], "reset": [], "interp": []})
    assert [a.label for a in p.stage("surgery")] == [
        "uv top=0.2",
        "uv full_rank=recipient_values top=1.0",
    ]
    assert all(a.params["full_rank"] for a in p.stage("surgery"))  # the params hold it


def test_sft_after_rl_has_its_no_rl_twin():
    """Each RL run from the last SFT epoch gets SFT after it, and one more run does the same
    extra SFT from that SFT checkpoint with no RL between (the control of the reward drop)."""
    p = plan(rl={"algorithms": ["ppo", "grpo"], "seeds": [0]})
    runs = p.stage("rlsft")
    twins = [a for a in runs if "rl" not in a.parents]
    assert len(runs) == 3 and len(twins) == 1
    (twin,) = twins
    assert twin.parents["sft"] == p.sft.id and twin.inputs["start_model"] == p.sft_end.path
    others = [a for a in runs if "rl" in a.parents]
    assert all(a.params == twin.params for a in others)  # the same SFT: only the start differs


def test_seeds_replicate_every_chain_on_one_data_artifact():
    one, three = plan(), plan(seeds=[0, 1, 2])
    assert len(three.stage("data")) == 1 and ids(one, "data") == ids(three, "data")
    # the seed-0 chain is today's single chain, id for id
    assert set(one.artifacts) - {one.tables.id} <= set(three.artifacts)
    for stage in ("pretrain", "sft", "rlsft", "spectrum", "surgery"):
        assert len(three.stage(stage)) == 3 * len(one.stage(stage)), stage
    assert len(three.stage("rl")) == 3 * len(one.stage("rl"))
    # RL seeds: the replicate's seed plus the rl.seeds offset; each run reads its own chain
    for chain in three.chains:
        assert {r.params["seed"] for r in chain.rl_runs} == {chain.seed}
        assert {r.parents["sft"] for r in chain.rl_runs} == {chain.sft.id}
        assert chain.sft.params["seed"] == chain.seed
        assert all(r.replicate == chain.seed for r in chain.rl_runs)
    listed = three.tables.inputs["artifacts"]
    assert {a["replicate"] for a in listed} == {0, 1, 2}
    assert len(three.tables.inputs["base_models"]) == 3


def test_seeds_must_be_distinct():
    import pytest

    from sftrl.config import ConfigError

    with pytest.raises(ConfigError, match="seeds"):
        plan(seeds=[1, 1])
