"""Config validation: defaults filled, bad keys and values rejected with the key named."""

import subprocess
from pathlib import Path

import pytest

from sftrl.config import ConfigError, load_config, validate_config

ROOT = Path(__file__).resolve().parents[1]


def test_default_config_validates_and_fills_defaults():
    config = load_config(ROOT / "config.yaml")
    assert config["data"]["eval_hands"] == 234
    assert config["resources"]["default"]["gpu"] == 0
    assert config["game"]["rules"]["ood"]["face_values"] == [11, 12, 13]


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_every_shipped_config_validates(name):
    load_config(ROOT / "config.yaml", ROOT / "configs" / name)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"data": {"sft_hand": 3}}, "data.sft_hand"),
        ({"data": {"unseen_fraction": 1.5}}, "data.unseen_fraction"),
        ({"data": {"eval_hands": "many"}}, "data.eval_hands"),
        ({"model": {"source": "gpt"}}, "model.source"),
        ({"typo_section": {}}, "typo_section"),
        ({"resources": {"sft": {"gpu": -1}}}, "resources.sft.gpu"),
        ({"game": {"ood_rule": "nope"}}, "game.ood_rule"),
        ({"sft": {"epochs": [2, 1]}}, "sft.epochs"),
        ({"rl": {"start_epochs": [3]}}, "rl.start_epochs"),
        ({"model": {"source": "hf"}}, "model.hf_path"),
    ],
)
def test_bad_config_names_the_key(override, named):
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "config.yaml", overrides=override)
    assert named in str(err.value)


def test_snakemake_rejects_bad_config_before_any_job(tmp_path):
    """A typo fails at parse time: no job runs, nothing is written under results/."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  sft_handz: 10\n")
    proc = subprocess.run(
        [str(ROOT / ".venv/bin/snakemake"), "-n", "--configfile", str(bad), "-d", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "data.sft_handz" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_schema_defaults_match_each_stage_defaults():
    """The schema is what the workflow runs with; the stage modules' own defaults (used outside
    the workflow) must not drift from it."""
    from sftrl import corpus, evaluate
    from sftrl.train import grpo, ppo, pretrain, resume, rlsft, sft
    from sftrl.train.common import defaults

    config = validate_config({})  # the schema's defaults alone
    # set by the plan from other config keys
    injected = {"seed", "model", "algorithm", "reward_mode", "prompt_format", "backend"}
    pairs = [
        (config["pretrain"], pretrain.DEFAULT_PARAMS),
        (config["pretrain"]["corpus"], corpus.DEFAULT_CORPUS),
        (config["sft"], sft.DEFAULT_PARAMS),
        (config["eval"], evaluate.DEFAULT_PARAMS),
        (config["rl"]["ppo"], ppo.DEFAULT_PARAMS),
        (config["rl"]["grpo"], grpo.DEFAULT_PARAMS),
        (config["rlsft"], rlsft.DEFAULT_PARAMS),
        (config["checkpointing"], defaults(resume.CheckpointSettings)),
    ]
    for from_schema, from_code in pairs:
        for key, value in from_code.items():
            if key in injected or (key == "corpus" and from_code is pretrain.DEFAULT_PARAMS):
                continue
            assert from_schema[key] == value, (key, from_schema[key], value)
    # reward.mode reaches every stage that computes a reward as its param reward_mode
    for module in (evaluate, ppo, grpo, rlsft):
        assert module.DEFAULT_PARAMS["reward_mode"] == config["reward"]["mode"], module


def test_bad_reward_mode_and_answer_format_name_their_keys():
    with pytest.raises(ConfigError, match=r"reward\.mode = 'paper': must be one of"):
        validate_config({"reward": {"mode": "paper"}})
    with pytest.raises(ConfigError, match=r"data\.answer_format = 'pretty': must be one of"):
        validate_config({"data": {"answer_format": "pretty"}})
    config = validate_config({})
    assert (config["reward"]["mode"], config["data"]["answer_format"]) == ("strict", "spaced")


def test_multi_turn_ppo_must_fit_the_tiny_context():
    with pytest.raises(ConfigError, match="rl.ppo.max_tries = 5.*max_position_embeddings"):
        load_config(ROOT / "config.yaml", overrides={"rl": {"ppo": {"max_tries": 5}}})
    fits = {"rl": {"ppo": {"max_tries": 5}}, "model": {"tiny": {"max_position_embeddings": 512}}}
    assert load_config(ROOT / "config.yaml", overrides=fits)["rl"]["ppo"]["max_tries"] == 5
