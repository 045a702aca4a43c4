"""The data stage: split sizes, the seen/unseen guarantee, and byte-identical reruns."""

from pathlib import Path

import pandas as pd
import pytest

from sftrl.config import load_config
from sftrl.data import build_splits, run, solvable_multisets
from sftrl.game import Rule, score
from sftrl.plan import Plan
from sftrl.store import read_manifest, verify

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"sft_hands": 60, "sft_heldout_hands": 20, "rl_hands": 40, "eval_hands": 30}


def data_artifact(results: Path, **data):
    config = load_config(
        ROOT / "config.yaml", overrides={"results": str(results), "data": {**SMALL, **data}}
    )
    return Plan(config).data


@pytest.fixture(scope="module")
def splits():
    return build_splits(data_artifact(Path("unused")).params)


def test_split_sizes_and_columns(splits):
    rows, summary = splits
    assert summary["rows"] == {
        "sft_train": 60,
        "sft_heldout": 20,
        "rl_prompts": 40,
        "eval_id_seen": 30,
        "eval_id_unseen": 30,
        "eval_ood": 30,
    }
    assert set(rows["sft_train"][0]) == {
        "prompt",
        "completion",
        "cards",
        "values",
        "rule",
        "multiset",
    }
    assert "completion" not in rows["rl_prompts"][0]


def test_unseen_multisets_never_reach_training(splits):
    rows, summary = splits
    unseen = set(summary["unseen_multisets"])
    assert len(unseen) == round(0.2 * 566)
    for split in ("sft_train", "sft_heldout", "rl_prompts", "eval_id_seen"):
        assert not {r["multiset"] for r in rows[split]} & unseen, split
    assert {r["multiset"] for r in rows["eval_id_unseen"]} <= unseen
    assert summary["unseen_in_training"] == 0


def test_sft_completions_are_correct_answers(splits):
    rows, _ = splits
    for row in rows["sft_train"]:
        verdict = score(row["completion"], row["cards"], Rule.from_json(row["rule"]))
        assert verdict.success, (row, verdict)


def test_ood_hands_follow_the_ood_rule(splits):
    rows, _ = splits
    for row in rows["eval_ood"]:
        rule = Rule.from_json(row["rule"])
        assert rule.face_values == (11, 12, 13)
        assert any(card in ("J", "Q", "K") for card in row["cards"])
        assert "J is 11" in row["prompt"]


def test_solvable_multiset_count_under_the_id_rule():
    assert len(solvable_multisets(Rule.from_config("id"))) == 566


def test_data_stage_twice_gives_identical_files(tmp_path):
    digests = []
    for name in ("a", "b"):
        art = data_artifact(tmp_path / name)
        run(art.spec())
        assert verify(art.dir) == []
        manifest = read_manifest(art.dir)
        assert manifest["summary"]["unseen_in_training"] == 0
        digests.append({f: meta["sha256"] for f, meta in manifest["files"].items()})
    assert digests[0] == digests[1]
    assert len(digests[0]) == 6
    frame = pd.read_parquet(Path(art.dir) / "eval_ood.parquet")
    assert len(frame) == 30


def test_answer_format_sets_the_sft_completions():
    import json

    rows, _ = build_splits(data_artifact(Path("unused"), answer_format="compact").params)
    for split in ("sft_train", "sft_heldout"):
        for row in rows[split]:
            assert " " not in json.loads(row["completion"])["formula"]
    spaced_prompts = [
        r["prompt"] for r in build_splits(data_artifact(Path("unused")).params)[0]["rl_prompts"]
    ]
    assert [r["prompt"] for r in rows["rl_prompts"]] == spaced_prompts  # prompts are unchanged
