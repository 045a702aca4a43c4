"""Number tokens (config model.tiny.number_tokens) in the plan, and the face-token NLL probe."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sftrl import evaluate as ev
from sftrl.config import load_config
from sftrl.game import RULES, card_values, render_completion, render_prompt, solve
from sftrl.modeling import build_tiny_model, build_tokenizer
from sftrl.plan import Plan
from sftrl.train.sft import completion_token_nll

ROOT = Path(__file__).resolve().parents[1]
FINGERPRINT = {"code": "fixed", "packages": {}}
TINY = dict(
    hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position_embeddings=256
)
OOD_HAND, ID_HAND = ("K", "2", "Q", "7"), ("A", "5", "5", "5")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def plan(**overrides) -> Plan:
    return Plan(load_config(ROOT / "config.yaml", overrides=overrides), FINGERPRINT)


def test_number_tokens_is_a_pretrain_param():
    word, digits = plan(), plan(model={"tiny": {"number_tokens": "digits"}})
    assert word.config["model"]["tiny"]["number_tokens"] == "word"  # the schema default
    (pre_w,), (pre_d,) = word.stage("pretrain"), digits.stage("pretrain")
    assert pre_w.params["model"]["number_tokens"] == "word"
    assert pre_d.params["model"]["number_tokens"] == "digits"
    assert pre_w.id != pre_d.id
    assert word.data.id == digits.data.id
    for stage in ("sft", "eval", "rl"):  # everything read from the base model follows
        assert {a.id for a in word.stage(stage)}.isdisjoint(a.id for a in digits.stage(stage))


def test_eval_params_carry_the_answer_format():
    compact = plan(data={"answer_format": "compact"})
    assert {a.params["answer_format"] for a in plan().stage("eval")} == {"spaced"}
    assert {a.params["answer_format"] for a in compact.stage("eval")} == {"compact"}


# ----------------------------------------------------------------------------- probe


def hand_row(cards, rule) -> dict:
    return {
        "prompt": render_prompt(cards, rule),
        "cards": list(cards),
        "values": list(card_values(cards, rule)),
        "rule": rule.to_json(),
    }


@pytest.fixture(scope="module")
def rows():
    return [hand_row(OOD_HAND, RULES["ood"]), hand_row(ID_HAND, RULES["id"])]


def tokenizer_for(rows, number_tokens):
    texts = [r["prompt"] for r in rows] + [c["completion"] for c in ev.reference_rows(rows)]
    return build_tokenizer(texts, number_tokens=number_tokens)


def test_face_numbers_of_the_rules():
    assert ev.face_numbers(RULES["ood"]) == {11, 12, 13}
    assert ev.face_numbers(RULES["id"]) == set()  # J/Q/K = 10 is also the card 10


def test_reference_rows_are_the_sft_rows(rows):
    ood = ev.reference_rows(rows)[0]
    formula = solve(card_values(OOD_HAND, RULES["ood"]), 24)
    assert ood["completion"] == render_completion(OOD_HAND, RULES["ood"], formula)
    assert ood["prompt"] == rows[0]["prompt"] and ood["face_numbers"] == {11, 12, 13}


@pytest.mark.parametrize("number_tokens", ["word", "digits"])
def test_face_token_mask_marks_exactly_the_face_numbers(rows, number_tokens):
    tok = tokenizer_for(rows, number_tokens)
    ref = ev.reference_rows(rows)[0]
    answer = tok(ref["completion"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    mask = ev.face_token_mask(tok, answer, ref["face_numbers"])
    faces = [t for t, m in zip(tok.convert_ids_to_tokens(answer), mask, strict=True) if m]
    # K=13 and Q=12: once in "number", once each in the formula
    count = {n: ref["completion"].split().count(str(n)) for n in (12, 13)}
    assert count[12] >= 2 and count[13] >= 2
    if number_tokens == "word":
        assert sorted(faces) == sorted(["12"] * count[12] + ["13"] * count[13])
    else:  # the digits of each face number, never the space token before it
        assert sorted(faces) == sorted(["1", "2"] * count[12] + ["1", "3"] * count[13])
    assert not any(ev.face_token_mask(tok, answer, {2, 7})[-1:])  # EOS is never a number


@pytest.mark.parametrize("number_tokens", ["word", "digits"])
def test_reference_nll_splits_the_sft_loss(rows, number_tokens):
    from sftrl.train.sft import sft_loss

    tok = tokenizer_for(rows, number_tokens)
    model = build_tiny_model(tok, seed=1, **TINY).eval()
    refs = ev.reference_rows(rows)
    scored = completion_token_nll(model, tok, refs, batch_size=2)
    # one row alone, by hand: answer token k is predicted at position n_prompt + k - 1
    from sftrl.train.sft import encode_row

    ids, n_prompt = encode_row(tok, refs[0]["prompt"], refs[0]["completion"])
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0], -1)
    by_hand = [-logp[t - 1, ids[t]].item() for t in range(n_prompt, len(ids))]
    assert scored[0][0] == ids[n_prompt:]
    assert scored[0][1] == pytest.approx(by_hand, abs=1e-5)  # padding in a batch changes nothing

    ood = ev.reference_nll(model, tok, rows[:1], batch_size=2)
    mask = ev.face_token_mask(tok, scored[0][0], {11, 12, 13})
    face = [v for v, m in zip(scored[0][1], mask, strict=True) if m]
    assert ood["face_tokens"] == len(face) > 0
    assert ood["face"] == pytest.approx(sum(face) / len(face))
    # the last token of each face number: the number itself, or its units digit
    last = [v for k, v in enumerate(scored[0][1]) if mask[k] and not mask[k + 1]]
    assert (
        ood["face_numbers"]
        == len(last)
        == sum(refs[0]["completion"].split().count(n) for n in ("12", "13"))
    )
    assert ood["face_last"] == pytest.approx(sum(last) / len(last))
    if number_tokens == "word":
        assert ood["face_last"] == pytest.approx(ood["face"])
    assert ood["all"] == pytest.approx(sft_loss(model, tok, refs[:1]), rel=1e-5)
    both = ev.reference_nll(model, tok, rows, batch_size=1)
    assert both["all"] == pytest.approx(sft_loss(model, tok, refs), rel=1e-5)
    assert both["face_tokens"] == ood["face_tokens"]  # the ID hand has no face-only number
    id_only = ev.reference_nll(model, tok, rows[1:])
    assert id_only["face"] is None and id_only["face_tokens"] == 0
    assert id_only["other"] == pytest.approx(id_only["all"])
