"""The pre-training corpus (formats, exclusions, determinism) and a micro pre-training run."""

from __future__ import annotations

import json
import re

import pytest

from sftrl.corpus import compact_line, generate_corpus, multiset_key
from sftrl.game import RULES, evaluate_formula, solvability_table
from sftrl.modeling import build_tiny_model, build_tokenizer
from sftrl.train.pretrain import batches, lr_at, pretrain

# a handful of ID multisets held out, as the data stage's unseen split would be
HELD_OUT = {"1-2-3-4", "2-7-10-10", "4-4-10-10", "3-3-8-8", "1-5-5-5", "6-6-6-6"}
TARGETS = [24, 10, 12, 18, 30, 36]  # fewer than the default: fewer solver tables to build
VERBOSE = "You are an expert"
# a micro pre-training stage: seconds
MICRO = {
    "seed": 0,
    "steps": 3,
    "batch_size": 8,
    "warmup_steps": 1,
    "corpus": {"n_lines": 64, "targets": [24, 10]},
    "model": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64},
}


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return generate_corpus(6000, 0, exclude_id_multisets=HELD_OUT, targets=TARGETS)


def target_of(line: str) -> int | None:
    if line.startswith(VERBOSE):
        return int(re.search(r"expert (\d+) point", line).group(1))
    found = re.search(r"target (\d+) \|", line)
    return int(found.group(1)) if found else None


def numbers_of(line: str) -> list[int]:
    if line.startswith(VERBOSE):
        return [
            int(x) for x in re.search(r'"number" : \[ ([\d ,]+) \]', line).group(1).split(" , ")
        ]
    return [int(x) for x in re.search(r"numbers ([\d ]+)", line).group(1).split()]


def id_key(line: str) -> str | None:
    """ID-rule multiset of the hand's cards (lines that show cards)."""
    if line.startswith(VERBOSE):
        cards = re.search(r"Cards : (.*?) \.", line).group(1).split(" , ")
    elif line.startswith("cards "):
        cards = line.split(" | ")[0].split()[1:]
    else:
        return None
    return multiset_key(
        min(10, {"A": 1, "J": 11, "Q": 12, "K": 13}.get(c) or int(c)) for c in cards
    )


def test_formats_mix_and_determinism(corpus):
    assert corpus == generate_corpus(6000, 0, exclude_id_multisets=HELD_OUT, targets=TARGETS)
    assert corpus != generate_corpus(6000, 1, exclude_id_multisets=HELD_OUT, targets=TARGETS)
    verbose = sum(line.startswith(VERBOSE) for line in corpus) / len(corpus)
    assert 0.10 < verbose < 0.20
    kinds = {line.split(" ", 1)[0] for line in corpus}
    assert kinds == {"You", "cards", "target"}
    rules = {
        re.search(r"J is (\d+) , Q is (\d+) , K is (\d+)", line).groups()
        for line in corpus
        if "J is" in line
    }
    assert ("10", "10", "10") in rules and ("11", "12", "13") in rules and len(rules) > 50


def test_every_formula_is_correct(corpus):
    for line in corpus[:2000]:
        target = target_of(line)
        if target is None:
            continue
        formula = line.split("formula")[-1].strip(' :"}').split("=")[0]
        result = evaluate_formula(formula)
        assert result.value == target, line
        used = sorted(int(x) for x in re.findall(r"\d+", formula))
        assert used == sorted(numbers_of(line)), line


def test_reserved_target_exclusions(corpus):
    target24 = [line for line in corpus if target_of(line) == 24]
    assert len(target24) > 1000
    # verbose format + target 24 is reserved for SFT and evaluation
    assert not any(line.startswith(VERBOSE) for line in target24)
    # no target-24 line for a held-out multiset, by card key or by value multiset
    for line in target24:
        assert multiset_key(numbers_of(line)) not in HELD_OUT, line
        assert id_key(line) not in HELD_OUT, line
    # the held-out multisets still appear with other targets
    others = [line for line in corpus if target_of(line) not in (None, 24)]
    assert any(multiset_key(numbers_of(line)) in HELD_OUT for line in others)


def test_only_solvable_hands(corpus):
    tables = {t: solvability_table((1, 13), 4, t) for t in TARGETS}
    for line in corpus[:1000]:
        target = target_of(line)
        if target is not None:
            assert tables[target][tuple(sorted(numbers_of(line)))]


def test_compact_line_shapes():
    rule = RULES["ood"]
    line = compact_line("mapping", ["K", "2"], [13, 2], rule, None, None)
    assert line == "cards K 2 | rule J is 11 , Q is 12 , K is 13 . | numbers 13 2"
    assert (
        compact_line("solve", ["K"], [13], rule, 13, "13")
        == "target 13 | numbers 13 | formula 13 = 13"
    )


def test_lr_schedule_and_batches():
    kw = dict(lr=1.0, warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    assert lr_at(0, **kw) == pytest.approx(0.1) and lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0) and lr_at(110, **kw) == pytest.approx(0.1)
    lengths = [i % 7 for i in range(100)]
    out = list(batches(lengths, 8, 30, seed=0))
    assert len(out) == 30 and all(len(b) == 8 for b in out)
    assert sorted(i for b in out[:12] for i in b) == sorted(set(i for b in out[:12] for i in b))
    assert out == list(batches(lengths, 8, 30, seed=0))


def test_micro_pretrain_lowers_loss(tmp_path):
    lines = generate_corpus(400, 0, targets=TARGETS)
    tok = build_tokenizer(lines)
    model = build_tiny_model(
        tok,
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
        seed=0,
    )
    stats = pretrain(
        model,
        tok,
        lines,
        steps=40,
        batch_size=16,
        lr=3e-3,
        warmup_steps=5,
        seed=0,
        log_path=tmp_path / "log.jsonl",
        progress=False,
    )
    log = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(log) == 40
    first = sum(r["loss"] for r in log[:5]) / 5
    assert stats["final_loss"] < 0.7 * first


def test_other_rule_tables_and_card_counts():
    rules = {"small": {"face_values": [2, 3, 4], "target": 12, "n_cards": 3}}
    lines = generate_corpus(
        200,
        0,
        rules=rules,
        rule_weights={"small": 1, "random": 1},
        random_base="small",
        targets=[12, 6],
        reserved_target=12,
    )
    for line in lines:
        assert len(numbers_of(line)) == 3, line
        if target_of(line) is not None:
            formula = line.split("formula")[-1].strip(' :"}').split("=")[0]
            assert evaluate_formula(formula).value == target_of(line)
    with pytest.raises(ValueError, match="not in"):
        generate_corpus(1, 0, rule_weights={"nope": 1})


def test_stage_run_writes_artifact(tmp_path):
    import pandas as pd

    from sftrl.store import artifact_id, read_manifest, verify
    from sftrl.train.pretrain import run

    data = tmp_path / "data"
    data.mkdir()
    pd.DataFrame({"multiset": sorted(HELD_OUT)}).to_parquet(data / "eval_id_unseen.parquet")
    params = MICRO
    parents = {"data": "0" * 16}
    spec = {
        "stage": "pretrain",
        "id": artifact_id("pretrain", params, parents),
        "params": params,
        "parents": parents,
        "inputs": {"data": str(data)},
        "root": str(tmp_path / "results"),
    }
    run(spec)
    out = tmp_path / "results" / "pretrain" / spec["id"]
    assert (out / "model" / "model.safetensors").is_file() and verify(out) == []
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 3
    summary = read_manifest(out)["summary"]
    assert summary["excluded_multisets"] == len(HELD_OUT) and summary["parameters"] > 0


def test_digit_number_tokens_never_give_a_word_level_model(tmp_path):
    """model.tiny.number_tokens = digits: a digit tokenizer, or the stage stops with the reason
    (train/pretrain.py builds the tokenizer before the model checks it)."""
    from sftrl.modeling import load_tokenizer, number_tokens_of
    from sftrl.train.pretrain import train_base_model

    params = {**MICRO, "model": {**MICRO["model"], "number_tokens": "digits"}}
    try:
        train_base_model(params, tmp_path, exclude_id_multisets=HELD_OUT, progress=False)
    except ValueError as error:  # pretrain.py does not pass the option to build_tokenizer yet
        assert "number_tokens = 'digits'" in str(error)
    else:
        assert number_tokens_of(load_tokenizer(tmp_path / "model")) == "digits"


def test_digit_tokens_pretrain(tmp_path, monkeypatch):
    """The stage with a digit tokenizer (as train/pretrain.py builds it once it passes
    model.tiny.number_tokens to build_tokenizer): a loadable model that reads digits."""
    import functools

    from sftrl import modeling
    from sftrl.train.pretrain import train_base_model

    digits = functools.partial(modeling.build_tokenizer, number_tokens="digits")
    monkeypatch.setattr(modeling, "build_tokenizer", digits)
    params = {**MICRO, "model": {**MICRO["model"], "number_tokens": "digits"}}
    summary = train_base_model(params, tmp_path, exclude_id_multisets=HELD_OUT, progress=False)
    tok = modeling.load_tokenizer(tmp_path / "model")
    assert modeling.number_tokens_of(tok) == "digits" and summary["vocab_size"] == len(tok)
    assert tok.convert_ids_to_tokens(tok("13", add_special_tokens=False)["input_ids"]) == ["1", "3"]
    modeling.load_model(tmp_path / "model", device="cpu")


# ----------------------------------------------------------------------------- feedback turns

FEEDBACK = "You failed this trial because"


def test_feedback_fraction_0_is_the_old_corpus():
    import hashlib

    lines = generate_corpus(3000, 0, exclude_id_multisets=HELD_OUT, targets=TARGETS)
    # the corpus the code made before feedback transcripts existed (same seed and options)
    assert hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16] == "7a053a2810340660"
    explicit = generate_corpus(
        3000, 0, exclude_id_multisets=HELD_OUT, targets=TARGETS, feedback_fraction=0.0
    )
    assert explicit == lines and not any(FEEDBACK in line for line in lines)


def test_feedback_transcripts_render_as_evaluation_multi_try_does():
    import pandas as pd

    from sftrl.corpus import CorpusSampler, feedback_line, feedback_messages
    from sftrl.evaluate import multi_try_verify
    from sftrl.game import render_completion, render_prompt, score

    sampler = CorpusSampler(0, targets=TARGETS)
    rule = sampler.rule(18)
    cards, values, formula = sampler.hand(rule, 18)
    wrong = [sampler.wrong_formula(values, rule, formula) for _ in range(3)]
    answers = [render_completion(cards, rule, f) for f in [*wrong, formula]]
    row = {"prompt": render_prompt(cards, rule), "cards": list(cards), "rule": rule.to_json()}
    asked = []

    def respond(prompts):
        asked.extend(prompts)
        return [answers[len(asked) - 1]]

    df = multi_try_verify(respond, pd.DataFrame([row]), max_tries=5)
    assert df["solved_at"].tolist() == [4]  # three wrong answers, then the right one
    line = feedback_line(cards, rule, wrong, formula)
    assert line == asked[-1] + " " + answers[-1]  # the last context + the right answer
    assert line.count(FEEDBACK) == 3 and all(p in line for p in asked)
    turns = feedback_messages(cards, rule, wrong, formula)
    assert [t["role"] for t in turns] == ["user"] + ["assistant", "user"] * 3 + ["assistant"]
    assert all(not score(a, list(cards), rule).success for a in answers[:3])


def test_feedback_lines_in_the_corpus(corpus):
    lines = generate_corpus(
        400,
        1,
        exclude_id_multisets=HELD_OUT,
        targets=TARGETS,
        verbose_fraction=0.5,
        feedback_fraction=0.5,
        feedback_max_wrong=3,
    )
    transcripts = [line for line in lines if FEEDBACK in line]
    assert 50 < len(transcripts) < 150  # ~ 400 x 0.5 x 0.5
    counts = {line.count(FEEDBACK) for line in transcripts}
    assert counts == {1, 2, 3}
    for line in transcripts:
        assert line.startswith(VERBOSE) and target_of(line) != 24  # reserved target: never
        last = line.rsplit(" . ", 1)[1]  # the answer after the last feedback turn
        formula = re.search(r'"formula" : " (.*) = \d+ "', last).group(1)
        assert evaluate_formula(formula).value == target_of(line)


def test_transcripts_must_fit_max_length():
    from sftrl.train.pretrain import check_line_lengths

    lines = generate_corpus(
        60, 0, targets=[24, 10], verbose_fraction=1.0, feedback_fraction=1.0, feedback_max_wrong=2
    )
    tok = build_tokenizer(lines)
    with pytest.raises(ValueError, match="pretrain.max_length"):
        check_line_lengths(tok, lines, 160, 256)
    with pytest.raises(ValueError, match="model.tiny.max_position_embeddings"):
        check_line_lengths(tok, lines, 1000, 180)
    check_line_lengths(tok, lines, 1000, 1000)
    check_line_lengths(tok, generate_corpus(60, 0, targets=[24, 10]), 160, 256)  # no transcripts
