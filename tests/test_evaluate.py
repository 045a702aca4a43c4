import json
import random

import pandas as pd
import pytest
import torch

from sftrl import evaluate as ev

SPECIAL = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
WORDS = [str(i) for i in range(30)] + list("abcdefghij") + ["{", "}", ":", ",", '"formula"']


# ----------------------------------------------------------------------------- fixtures


def make_tokenizer():
    """A word-level tokenizer like the project's (whitespace split, BOS prepended)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL + WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="[BOS] $A", special_tokens=[("[BOS]", vocab["[BOS]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="[BOS]",
        eos_token="[EOS]",
        clean_up_tokenization_spaces=False,
    )


def make_model(tokenizer, seed=0, eos_boost=2.0):
    """A tiny random Llama; the EOS row of lm_head is boosted so that some rows stop early."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        initializer_range=0.2,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        eos = tokenizer.eos_token_id
        model.lm_head.weight[eos] += eos_boost * model.lm_head.weight.std()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.do_sample = False
    return model


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return make_model(tok)


@pytest.fixture(scope="module")
def prompts():
    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 15))) for _ in range(10)]


# ----------------------------------------------------------------------------- generation


def test_left_pad():
    ids, mask, pos = ev.left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pos.tolist() == [[0, 1, 2], [0, 0, 0]]
    with pytest.raises(ValueError):
        ev.left_pad([[1], []], pad_id=0)


def reference_no_cache(model, tok, prompt, max_new_tokens):
    enc = tok(prompt, return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, use_cache=False)
    new = out[0, enc["input_ids"].shape[1] :]
    return tok.decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def test_batched_cached_greedy_equals_per_sample_uncached(model, tok, prompts):
    reference = [reference_no_cache(model, tok, p, 16) for p in prompts]
    for batch_size in (1, 4, 64):
        got = ev.generate(model, tok, prompts, max_new_tokens=16, batch_size=batch_size)
        assert [g[0] for g in got] == reference
    # the test covers both rows that stop at EOS and rows that run to max_new_tokens
    lengths = [len(t[0]) for t in ev.generate_token_ids(model, tok, prompts, max_new_tokens=16)]
    assert min(lengths) < 16 and max(lengths) == 16


def test_left_padding_does_not_change_a_prompt(model, tok):
    short, long = "3 a", "1 2 3 4 5 6 7 8 9 10 11 12 13 b c d e"
    alone = ev.generate(model, tok, [short], max_new_tokens=12)[0][0]
    together = ev.generate(model, tok, [long, short, long], max_new_tokens=12, batch_size=3)
    assert together[1][0] == alone
    assert together[0][0] == together[2][0]


def test_generate_restores_training_mode(model, tok):
    model.train()
    try:
        ev.generate(model, tok, ["1 2"], max_new_tokens=2)
        assert model.training
    finally:
        model.eval()


def test_sampling_is_seeded_and_batch_independent(model, tok, prompts):
    kwargs = dict(max_new_tokens=10, temperature=1.5, n=3)
    a = ev.generate(model, tok, prompts, seed=7, batch_size=64, **kwargs)
    b = ev.generate(model, tok, prompts, seed=7, batch_size=4, **kwargs)
    c = ev.generate(model, tok, prompts, seed=8, batch_size=64, **kwargs)
    assert a == b
    assert a != c
    assert all(len(per) == 3 for per in a)
    assert any(len(set(per)) > 1 for per in a)  # samples of one prompt differ
    # a prompt's samples do not depend on the other prompts in the call
    assert ev.generate(model, tok, prompts[:1], seed=7, **kwargs)[0] == a[0]
    greedy = ev.generate(model, tok, prompts, max_new_tokens=10, n=3)
    assert all(len(set(per)) == 1 for per in greedy)


# ----------------------------------------------------------------------------- scoring

game = pytest.importorskip("sftrl.game")
from sftrl.game.rules import RULES, card_values, sample_hand  # noqa: E402


def make_rows(rule_name: str, count: int, seed: int, split: str) -> list[dict]:
    rule = RULES[rule_name]
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        cards = list(sample_hand(rng, rule))
        rows.append(
            {
                "split": split,
                "prompt": game.render_prompt(cards, rule),
                "cards": cards,
                "values": list(card_values(cards, rule)),
                "rule": rule.to_json(),
            }
        )
    return rows


def solver_answer(row: dict) -> str:
    rule = game.Rule.from_json(row["rule"])
    formula = game.solve(row["values"], rule.target)
    assert formula is not None
    return game.render_completion(row["cards"], rule, formula)


def answer_with_formula(row: dict, formula: str) -> str:
    """The real JSON answer format with an arbitrary (possibly illegal) formula string."""
    rule = game.Rule.from_json(row["rule"])
    template = game.render_completion(row["cards"], rule, "1")
    marker = f'" 1 = {rule.target} "'
    assert marker in template
    return template.replace(marker, f'" {formula} = {rule.target} "')


def corrupted_answers(row: dict) -> dict[str, str]:
    """One wrong answer per error category."""
    rule = game.Rule.from_json(row["rule"])
    values = row["values"]
    total = " + ".join(str(v) for v in values)
    wrong_value = total if sum(values) != rule.target else " * ".join(str(v) for v in values)
    return {
        "no_json": "I do not know the answer .",
        "illegal_formula": answer_with_formula(row, "( 2 $ 3 ) x 4"),
        "wrong_numbers": answer_with_formula(row, " + ".join(str(v) for v in values[:-1])),
        "wrong_value": answer_with_formula(row, wrong_value),
    }


@pytest.fixture(scope="module")
def rows():
    return (
        make_rows("id", 6, 1, "id_seen")
        + make_rows("id", 4, 2, "id_unseen")
        + make_rows("ood", 6, 3, "ood")
    )


def test_solver_answers_all_succeed(rows):
    df = ev.score_items(rows, [solver_answer(r) for r in rows])
    assert list(df.columns) == list(ev.PREDICTION_COLUMNS)
    assert df["success"].all()
    assert (df["category"] == "correct").all()
    assert df["number_correct"].all()
    assert (df["reward"] == df["reward"].max()).all()
    assert df["split"].tolist() == [r["split"] for r in rows]
    summary = ev.summarize(df)
    assert all(s["success"]["rate"] == 1.0 for s in summary.values())


@pytest.mark.parametrize("category", ["no_json", "illegal_formula", "wrong_numbers", "wrong_value"])
def test_corrupted_answers_fail_in_their_category(rows, category):
    df = ev.score_items(rows, [corrupted_answers(r)[category] for r in rows])
    assert not df["success"].any()
    assert (df["category"] == category).all(), df[["category", "reason"]]
    summary = ev.summarize(df)
    for split in ("id_seen", "id_unseen", "ood"):
        assert summary[split]["success"]["rate"] == 0.0
        assert summary[split]["categories"][category] == 1.0


def test_score_items_reads_answers_in_the_reward_mode(rows):
    answers = [solver_answer(r) for r in rows]  # the spaced text format
    published = ev.score_items(rows, answers, reward_mode="published")
    assert published["reward"].eq(-3).all() and not published["success"].any()
    compact = [json.dumps({"formula": json.loads(a)["formula"].replace(" ", "")}) for a in answers]
    assert ev.score_items(rows, compact, reward_mode="published")["success"].all()
    assert ev.score_items(rows, answers)["success"].all()  # strict is the default


def test_score_items_with_samples(rows):
    comps = [[solver_answer(r), "no answer"] for r in rows]
    df = ev.score_items(rows, comps)
    assert len(df) == 2 * len(rows)
    assert df.groupby("sample")["success"].mean().tolist() == [1.0, 0.0]
    summary = ev.summarize(df)
    assert summary["ood"]["samples_per_item"] == 2
    assert summary["ood"]["pass_at_n"]["rate"] == 1.0
    assert summary["ood"]["success"]["rate"] == 0.5


def test_multi_try_success_on_third_attempt(rows):
    """A fake model fails twice (two categories) and answers right on its third try."""
    by_prompt = {r["prompt"]: r for r in rows}
    calls = []

    def respond(prompts):
        calls.append(list(prompts))
        attempt = len(calls)
        out = []
        for p in prompts:
            original = next(k for k in by_prompt if p.startswith(k))
            row = by_prompt[original]
            if attempt == 1:
                out.append(corrupted_answers(row)["wrong_value"])
            elif attempt == 2:
                out.append("no json here")
            else:
                out.append(solver_answer(row))
        return out

    df = ev.multi_try_verify(respond, rows, max_tries=5)
    assert len(calls) == 3  # stops once every row succeeded
    # the retry prompt is the previous prompt + completion + feedback
    first = rows[0]
    wrong = corrupted_answers(first)["wrong_value"]
    retry = calls[1][0]
    assert retry.startswith(first["prompt"].strip() + " " + wrong.strip())
    verdict = game.score(wrong, first["cards"], game.Rule.from_json(first["rule"]))
    assert retry.endswith(game.render_feedback(wrong, verdict.reason).strip())
    assert (df["solved_at"] == 3).all() and (df["tries"] == 3).all()
    assert not df["success"].any()  # first-attempt columns
    assert df["attempt_categories"].iloc[0] == ["wrong_value", "no_json", "correct"]
    summary = ev.summarize(df, max_tries=5)
    for split in ("id_seen", "id_unseen", "ood"):
        at = summary[split]["success_at_k"]
        assert sorted(at) == ["1", "2", "3", "4", "5"] and at["5"]["rate"] == 1.0
        assert at["1"]["rate"] == 0.0 and at["2"]["rate"] == 0.0 and at["3"]["rate"] == 1.0
        assert summary[split]["success"]["rate"] == 0.0


def test_multi_try_budget(rows):
    df = ev.multi_try_verify(lambda ps: ["nope"] * len(ps), rows[:3], max_tries=4)
    assert (df["tries"] == 4).all() and (df["solved_at"] == 0).all()
    at = ev.summarize(df)["id_seen"]["success_at_k"]
    assert sorted(at) == ["1", "2", "3", "4"] and at["4"]["rate"] == 0.0


SUMMARY_KEYS = {
    "n",
    "n_items",
    "samples_per_item",
    "success",
    "mean_reward_at_1",
    "categories",
    "number_accuracy",
    "number_accuracy_answered",
    "number_answered",
    "says_ten_rate",
    "max_tries",
    "success_at_k",
}


def test_summary_has_every_split_and_key(rows):
    comps = [solver_answer(r) if i % 2 else "nothing" for i, r in enumerate(rows)]
    summary = ev.summarize(ev.score_items(rows, comps))
    assert list(summary) == ["id_seen", "id_unseen", "ood"]
    for split, s in summary.items():
        assert SUMMARY_KEYS <= set(s), split
        assert set(s["categories"]) == set(ev.CATEGORIES)
        assert {"rate", "low", "high", "successes", "n"} <= set(s["success"])
        assert s["success"]["low"] <= s["success"]["rate"] <= s["success"]["high"]
        json.dumps(s, allow_nan=False)


# ----------------------------------------------------------------------------- model level


def test_evaluate_model_and_stage(tmp_path, rows):
    """End to end on a tiny random model: files, summary, stage artifact."""
    from sftrl import store
    from sftrl.modeling import build_tiny_model, build_tokenizer, save_model

    texts = [r["prompt"] for r in rows] + [solver_answer(r) for r in rows]
    tokenizer = build_tokenizer(texts)
    tiny = build_tiny_model(
        tokenizer,
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        intermediate_size=32,
        max_position_embeddings=512,
    )
    model_dir = save_model(tiny, tokenizer, tmp_path / "model")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    frame = pd.DataFrame(rows)
    for split in ("id_seen", "id_unseen", "ood"):
        frame[frame["split"] == split].drop(columns="split").to_parquet(
            data_dir / f"eval_{split}.parquet"
        )

    params = {
        "splits": ["id_seen", "ood"],
        "decoding": {"temperature": 0.0, "n": 1, "max_new_tokens": 6, "seed": 0},
        "batch_size": 4,
        "multi_try": {"enabled": True, "max_tries": 2},
        "limit": 3,
    }
    summary, preds = ev.evaluate_model(
        model_dir,
        data_dir,
        splits=params["splits"],
        decoding=params["decoding"],
        batch_size=4,
        multi_try=params["multi_try"],
        limit=3,
        progress=False,
    )
    assert list(summary["splits"]) == ["id_seen", "ood"]
    assert summary["decoding"] == params["decoding"]
    probe = summary["reference_nll"]  # the face-token NLL probe, per split
    assert list(probe) == ["id_seen", "ood"] and probe["id_seen"]["face"] is None
    assert probe["ood"]["face_tokens"] > 0 and probe["ood"]["face"] > 0
    assert len(preds) == 6 and set(ev.MULTI_TRY_COLUMNS) <= set(preds.columns)

    params = ev.resolve_params(params)
    spec = {
        "stage": "eval",
        "params": params,
        "parents": {"model": "0" * 16, "data": "1" * 16},
        "inputs": {"models": {"final": str(model_dir)}, "data": str(data_dir)},
        "root": str(tmp_path / "results"),
    }
    spec["id"] = store.artifact_id("eval", params, spec["parents"])
    ev.run(spec)
    out = store.artifact_dir(spec["root"], "eval", spec["id"])
    assert store.verify(out) == []
    written = json.loads((out / "summary.json").read_text())["models"]["final"]
    assert written["splits"] == json.loads(json.dumps(summary["splits"]))
    again = pd.read_parquet(out / "predictions.parquet")
    assert again["completion"].tolist() == preds["completion"].tolist()
    assert set(again["checkpoint"]) == {"final"}
    manifest_summary = store.read_manifest(out)["summary"]
    assert manifest_summary["final/ood_success"] == summary["splits"]["ood"]["success"]["rate"]


def test_reward_mean_at_1(model, tok, rows):
    value = ev.reward_mean_at_1(model, tok, rows[:4], max_new_tokens=3)
    answers = ev.generate(model, tok, [r["prompt"] for r in rows[:4]], max_new_tokens=3)
    expected = ev.score_items(rows[:4], [a[0] for a in answers])["reward"].mean()
    assert value == pytest.approx(expected)
