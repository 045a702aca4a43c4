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
        "eval_ood_select": 234,
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


def test_the_ood_peak_is_picked_on_hands_that_are_never_reported(splits):
    """ood_selection split: eval_ood and eval_ood_select draw from two halves of the OOD value
    multisets; `reported` (the published code's way) writes no selection split."""
    rows, summary = splits
    report = {r["multiset"] for r in rows["eval_ood"]}
    select = {r["multiset"] for r in rows["eval_ood_select"]}
    assert report and select and not report & select
    assert summary["ood_select_in_eval_ood"] == 0
    assert all(
        Rule.from_json(r["rule"]).face_values == (11, 12, 13) for r in rows["eval_ood_select"]
    )
    published, summary = build_splits(
        data_artifact(Path("unused"), ood_selection="reported").params
    )
    assert "eval_ood_select" not in published and summary["ood_select_in_eval_ood"] is None
    assert len({r["multiset"] for r in published["eval_ood"]}) > 0


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
    assert len(digests[0]) == 7  # six splits and the OOD selection split
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


def test_draw_stops_with_a_clear_error_when_no_allowed_hand_comes(monkeypatch):
    import random

    from sftrl import data

    monkeypatch.setattr(data, "MAX_DRAWS", 300)
    with pytest.raises(ValueError, match="split eval_id_unseen: no allowed hand in 300 draws"):
        data.draw_hands(
            random.Random(0), Rule.from_config("id"), 5, lambda key: False, "split eval_id_unseen"
        )


def test_train_rule_with_its_own_face_values_is_keyed_like_its_hands():
    """Held-out keys come from the hands' ID keys: a train rule with J/Q/K != 10 used to spin."""
    params = data_artifact(Path("unused")).params
    params["train_rule"] = {"name": "faces", "face_values": [11, 12, 13], "min_face_cards": 1}
    rows, summary = build_splits(params)
    unseen = set(summary["unseen_multisets"])
    assert all("10" in key.split("-") for key in unseen)  # every hand holds a face card
    assert {r["multiset"] for r in rows["eval_id_unseen"]} <= unseen
    assert summary["unseen_in_training"] == 0


def test_hand_counts_cover_every_ordering():
    from sftrl.data import id_hand_counts

    counts = id_hand_counts(Rule(name="two", face_values=(10, 10, 10), target=20, n_cards=2))
    # 10+10: any of 10, J, Q, K twice (4 x 4); 2*10: A 2 and one of four tens, two orders; 4*5
    assert counts == {"10-10": 16, "2-10": 8, "4-5": 2}


def test_corpus_draw_stops_with_a_clear_error_on_an_unreachable_target(monkeypatch):
    import sftrl.game.rules
    from sftrl.corpus import generate_corpus

    monkeypatch.setattr(sftrl.game.rules, "MAX_DRAWS", 300)
    two_cards = {"id": Rule(name="id", face_values=(10, 10, 10), n_cards=2)}
    with pytest.raises(ValueError, match="pretrain.corpus: no solvable.*target 997 in 300 draws"):
        generate_corpus(
            5,
            0,
            targets=[997],
            reserved_target=997,
            verbose_fraction=0.0,
            format_weights={"solve": 1.0},
            rule_weights={"id": 1.0},
            rules=two_cards,
        )
