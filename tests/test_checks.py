"""Bad configs are rejected before any job, with the key named: one case per class of mistake.

`load_config` is what the Snakefile runs (through `validate_config`); a few cases also go
through a real `snakemake -n` on the micro config.
"""

import subprocess
import warnings
from pathlib import Path

import pytest
import yaml

from sftrl.checks import ConfigWarning
from sftrl.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
MICRO = (ROOT / "config.yaml", ROOT / "configs" / "micro.yaml")

BAD = [
    # model widths and depth
    ({"model": {"tiny": {"num_heads": 3}}}, "model.tiny.num_heads"),
    ({"model": {"tiny": {"hidden_size": 36, "num_heads": 4}}}, "model.tiny.hidden_size"),
    ({"surgery": {"reset": [{"layers": "0-5"}]}}, "surgery.reset.0.layers"),
    ({"surgery": {"reset": [{"layers": "0-99999999999"}]}}, "surgery.reset.0.layers"),
    ({"surgery": {"reset": [{"layers": "1-0"}]}}, "surgery.reset.0.layers"),
    ({"surgery": {"reset": [{"layers": [7]}]}}, "surgery.reset.0.layers"),
    # batch arithmetic and sizes where zero is meaningless
    ({"rl": {"grpo": {"num_generations": 3}}}, "rl.grpo.num_generations"),
    ({"rl": {"ppo": {"minibatch_size": 0}}}, "rl.ppo.minibatch_size"),
    ({"rl": {"ppo": {"rollout_batch_size": 0}}}, "rl.ppo.rollout_batch_size"),
    ({"rl": {"ppo": {"minibatch_size": 3}}}, "rl.ppo.minibatch_size"),
    ({"sft": {"grad_accum": 0}}, "sft.grad_accum"),
    ({"sft": {"batch_size": 0}}, "sft.batch_size"),
    ({"pretrain": {"max_length": 0}}, "pretrain.max_length"),
    ({"rlsft": {"epochs": 0}}, "rlsft.epochs"),
    # enums
    ({"rl": {"grpo": {"loss_type": "dapoo"}}}, "rl.grpo.loss_type"),
    ({"rl": {"grpo": {"lr_schedule": "cosine_warm"}}}, "rl.grpo.lr_schedule"),
    ({"sft": {"lr_scheduler": "constnt"}}, "sft.lr_scheduler"),
    # closed objects
    ({"sft": {"lora": {"rank": 8}}}, "sft.lora.rank"),
    ({"rlsft": {"sft": {"learning_rate": 1e-4}}}, "rlsft.sft.learning_rate"),
    ({"rlsft": {"sft": {"batch_size": 0}}}, "rlsft.sft.batch_size"),
    ({"pretrain": {"corpus": {"format_weights": {"mappng": 1.0}}}}, "format_weights.mappng"),
    ({"pretrain": {"corpus": {"rule_weights": {"id": "high"}}}}, "rule_weights.id"),
    ({"pretrain": {"corpus": {"targets": [24, "x"]}}}, "pretrain.corpus.targets.1"),
    ({"pretrain": {"corpus": {"rules": [{"face_values": [1, 2, 3]}]}}}, "pretrain.corpus.rules"),
    # the corpus sampler's own checks
    ({"pretrain": {"corpus": {"random_base": "nope"}}}, "pretrain.corpus"),
    ({"pretrain": {"corpus": {"rule_weights": {"idd": 1.0}}}}, "pretrain.corpus"),
    ({"pretrain": {"corpus": {"n_lines": 3}}}, "pretrain.corpus.n_lines"),
    # fractions and rates out of range
    ({"pretrain": {"corpus": {"verbose_fraction": 1.5}}}, "pretrain.corpus.verbose_fraction"),
    ({"rl": {"ppo": {"gamma": 1.1}}}, "rl.ppo.gamma"),
    ({"rl": {"ppo": {"temperature": 0}}}, "rl.ppo.temperature"),
    ({"eval": {"limit": 0}}, "eval.limit"),
    ({"eval": {"device": "gpu"}}, "eval.device"),
    ({"resources": {"spectra": {"gpu": 1}}}, "resources.spectra"),
    # rules: unsolvable, impossible, too few multisets to split
    ({"game": {"rules": {"ood": {"n_cards": 2, "target": 997}}}}, "game.rules.ood"),
    ({"game": {"rules": {"id": {"n_cards": 2, "min_face_cards": 3}}}}, "game.rules.id"),
    ({"game": {"rules": {"id": {"n_cards": 2, "target": 100}}}}, "game.rules.id"),
    # an OOD rule of one value multiset cannot be halved into reported and selection hands
    ({"game": {"rules": {"ood": {"n_cards": 2, "target": 169}}}}, "data.ood_selection"),
    # splits
    ({"eval": {"splits": ["id_seen", "id_unseen"]}}, "eval.splits"),
    ({"eval": {"splits": ["ood", "test"]}}, "eval.splits"),
    ({"rlsft": {"reward_split": "rl_prompt"}}, "rlsft.reward_split"),
    # k and fractions
    ({"spectrum": {"k": 1.5}}, "spectrum.k"),
    ({"surgery": {"uv": [{"top": 2.5}]}}, "surgery.uv.0.top"),
    # module filters matching no tensor of the tiny model
    ({"spectrum": {"modules": ["q_proj", "qproj"]}}, "spectrum.modules.1"),
    ({"surgery": {"uv": [{"top": 0.5, "modules": ["atn"]}]}}, "surgery.uv.0.modules.0"),
    # HF path
    ({"model": {"source": "hf", "hf_path": "/no/such/model"}}, "model.hf_path"),
    ({"model": {"source": "hf", "hf_path": "not a hub id!"}}, "model.hf_path"),
]


@pytest.mark.parametrize(("override", "named"), BAD, ids=[n for _, n in BAD])
def test_bad_config_is_rejected_naming_the_key(override, named):
    with pytest.raises(ConfigError) as err:
        load_config(*MICRO, overrides=override)
    assert named in str(err.value)


def test_good_variants_still_pass():
    load_config(*MICRO, overrides={"spectrum": {"modules": ["q_proj", "mlp"], "k": 4}})
    load_config(*MICRO, overrides={"surgery": {"reset": [{"layers": "0,1"}, {"layers": "all"}]}})
    load_config(*MICRO, overrides={"sft": {"lora": {"r": 4, "alpha": 8}}})
    rules = {"id": {"face_values": [10, 10, 10]}, "ood": {"face_values": [11, 12, 13]}}
    load_config(*MICRO, overrides={"pretrain": {"corpus": {"rules": rules}}})
    load_config(*MICRO, overrides={"model": {"source": "hf", "hf_path": "Qwen/Qwen2.5-0.5B"}})


def test_hf_directory_without_config_json_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="model.hf_path.*config.json"):
        load_config(*MICRO, overrides={"model": {"source": "hf", "hf_path": str(tmp_path)}})


def test_hf_depth_read_from_config_json(tmp_path):
    (tmp_path / "config.json").write_text('{"num_hidden_layers": 3}')
    model = {"source": "hf", "hf_path": str(tmp_path)}
    load_config(*MICRO, overrides={"model": model, "surgery": {"reset": [{"layers": "2"}]}})
    with pytest.raises(ConfigError, match="surgery.reset.0.layers"):
        load_config(*MICRO, overrides={"model": model, "surgery": {"reset": [{"layers": "3"}]}})


def test_few_distinct_hands_warn_of_duplicates():
    with pytest.warns(ConfigWarning, match="data.eval_hands.*eval_id_unseen"):
        load_config(*MICRO, overrides={"data": {"eval_hands": 5000}})
    with pytest.warns(ConfigWarning, match="data.select_hands.*eval_ood_select"):
        load_config(*MICRO, overrides={"data": {"select_hands": 8000}})
    with pytest.warns(ConfigWarning, match="eval.decoding.n"):
        load_config(*MICRO, overrides={"eval": {"decoding": {"n": 4}}})
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        load_config(*MICRO)


def test_schema_scheduler_names_exist_in_transformers():
    from transformers.trainer_utils import SchedulerType

    from sftrl.config import load_schema

    names = load_schema()["properties"]["sft"]["properties"]["lr_scheduler"]["enum"]
    assert set(names) <= {s.value for s in SchedulerType}


def test_schema_lora_keys_are_lora_config_arguments():
    import inspect

    from sftrl.config import load_schema
    from sftrl.modeling import lora_config

    keys = load_schema()["properties"]["sft"]["properties"]["lora"]["properties"]
    assert set(keys) == set(inspect.signature(lora_config).parameters)


def test_rlsft_sft_overrides_every_sft_key_but_epochs():
    from sftrl.config import load_schema

    props = load_schema()["properties"]
    assert set(props["rlsft"]["properties"]["sft"]["properties"]) == (
        set(props["sft"]["properties"]) - {"epochs"}
    )


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"rl": {"grpo": {"num_generations": 3}}}, "rl.grpo.num_generations"),
        ({"surgery": {"reset": [{"layers": "1-0"}]}}, "surgery.reset.0.layers"),
        ({"game": {"rules": {"ood": {"n_cards": 2, "target": 997}}}}, "game.rules.ood"),
        ({"rlsft": {"sft": {"lrr": 1e-4}}}, "rlsft.sft.lrr"),
    ],
    ids=["batch", "layers", "rule", "closed-object"],
)
def test_snakemake_dry_run_rejects_naming_the_key(tmp_path, override, named):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(override))
    proc = subprocess.run(
        [str(ROOT / ".venv/bin/snakemake"), "-n", "-d", str(tmp_path), "--configfile"]
        + [str(MICRO[1]), str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert named in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_grpo_batch_rule_is_the_trainers():
    from sftrl.checks import grpo_group_problem
    from sftrl.train.grpo import prompts_per_step

    for batch in (4, 6, 8):
        for accum in (1, 3):
            for generations in (2, 3, 4, 8):
                for world in (1, 2):
                    p = {
                        "per_device_train_batch_size": batch,
                        "grad_accum": accum,
                        "num_generations": generations,
                    }
                    try:
                        prompts_per_step(p, world)
                        trainer_ok = True
                    except ValueError:
                        trainer_ok = False
                    assert trainer_ok == (grpo_group_problem(p, world) is None), p
