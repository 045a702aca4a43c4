"""Tests for sftrl.game.prompts: text format, round trips, vocabulary, a rule variant end to end."""

from __future__ import annotations

import json
import random

import pytest

from sftrl.game import (
    RULES,
    Rule,
    card_values,
    is_solvable,
    parse_answer,
    render_completion,
    render_feedback,
    render_prompt,
    sample_hand,
    score,
    solve,
    vocabulary,
)

CARDS = ("K", "2", "Q", "7")


def _spaced(text: str) -> bool:
    """The text format: single spaces between tokens, nothing at the ends."""
    return text == " ".join(text.split()) and "\n" not in text


@pytest.mark.parametrize("name", ["id", "ood"])
def test_prompt_states_rule_cards_target_and_spec(name):
    rule = RULES[name]
    prompt = render_prompt(CARDS, rule)
    assert _spaced(prompt)
    assert "expert 24 point player" in prompt
    j, q, k = rule.face_values
    assert f"J is {j} , Q is {q} , K is {k} ." in prompt
    assert "Cards : K , 2 , Q , 7 ." in prompt
    assert "exactly once" in prompt and "+ - * / ( )" in prompt and "make 24" in prompt
    for key in ('"cards"', '"number"', '"formula"'):
        assert key in prompt.split()
    assert 50 <= len(prompt.split()) <= 80


def test_completion_is_spaced_json():
    completion = render_completion(CARDS, RULES["id"], "(10-2)*(10-7)")
    assert completion == (
        '{ "cards" : [ "K" , "2" , "Q" , "7" ] , "number" : [ 10 , 2 , 10 , 7 ] , '
        '"formula" : " ( 10 - 2 ) * ( 10 - 7 ) = 24 " }'
    )
    assert _spaced(completion)
    assert json.loads(completion) == {
        "cards": ["K", "2", "Q", "7"],
        "number": [10, 2, 10, 7],
        "formula": " ( 10 - 2 ) * ( 10 - 7 ) = 24 ",
    }


@pytest.mark.parametrize("name", ["id", "ood"])
def test_round_trip_parse_and_score(name):
    rule = RULES[name]
    rng = random.Random(42)
    for _ in range(100):
        cards = sample_hand(rng, rule)
        values = card_values(cards, rule)
        formula = solve(values, rule.target)
        completion = render_completion(cards, rule, formula)
        parsed = parse_answer(completion)
        assert parsed.json_ok
        assert parsed.cards == list(cards)
        assert parsed.number == list(values)
        assert parsed.formula == formula
        verdict = score(completion, cards, rule)
        assert verdict.reward == 5 and verdict.success and verdict.number_correct


def test_feedback_is_the_published_verifier_message():
    answer = render_completion(CARDS, RULES["ood"], "13 + 12 - 7 / 7")
    text = render_feedback(answer, "the formula uses 10 which is not one of the cards")
    assert _spaced(text)
    assert (
        text == "You failed this trial because the formula uses 10 which is not one of the cards ."
    )
    assert render_feedback(answer, "the formula is empty .") == (
        "You failed this trial because the formula is empty ."
    )


def test_vocabulary_covers_every_template_token():
    vocab = set(vocabulary())
    assert vocabulary() == sorted(vocab)
    rng = random.Random(0)
    for rule in RULES.values():
        for _ in range(50):
            cards = sample_hand(rng, rule)
            prompt = render_prompt(cards, rule)
            completion = render_completion(cards, rule, solve(card_values(cards, rule), 24))
            reason = score(completion.replace("*", "+"), cards, rule).reason
            feedback = render_feedback(completion, reason)
            for text in (prompt, completion, feedback):
                missing = set(text.split()) - vocab
                assert not missing, missing
    assert {"11", "12", "13", '"K"', "K", "=", "24", '"formula"'} <= vocab


@pytest.mark.parametrize(
    "config",
    [
        {
            "name": "five30",
            "face_values": [11, 12, 13],
            "target": 30,
            "n_cards": 5,
            "min_face_cards": 1,
        },
        {"name": "t18", "face_values": [1, 5, 9], "target": 18},
    ],
)
def test_a_rule_variant_works_end_to_end(config):
    """A new rule is data only: sampling, solver, prompt, completion, parsing and reward."""
    rule = Rule.from_config(config)
    assert Rule.from_json(rule.to_json()) == rule
    rng = random.Random(9)
    for _ in range(10):
        cards = sample_hand(rng, rule)
        assert len(cards) == rule.n_cards
        values = card_values(cards, rule)
        assert is_solvable(values, rule.target)
        prompt = render_prompt(cards, rule)
        assert f"make {rule.target} ." in prompt and f"equal to {rule.target} )" in prompt
        assert f"J is {rule.face_values[0]} ," in prompt
        completion = render_completion(cards, rule, solve(values, rule.target))
        assert completion.endswith(f"= {rule.target} " + '" }')
        verdict = score(completion, cards, rule)
        assert verdict.success and verdict.reward == 5
        # only the left-hand side is graded: whatever follows "=" is ignored
        wrong = completion.replace(f"= {rule.target}", "= 24")
        assert score(wrong, cards, rule).success  # the "= ..." part is ignored
    # scoring uses the rule's target, not 24
    cards = ("6", "6", "6") + (("A", "A") if rule.n_cards == 5 else ("A",))
    values = card_values(cards, rule)
    summed = " + ".join(str(v) for v in values)
    verdict = score(f'{{ "formula" : " {summed} " }}', cards, rule)
    total = sum(values)
    assert verdict.success == (total == rule.target)
    if total != rule.target:
        assert verdict.reason == f"the formula evaluates to {total} not {rule.target}"


@pytest.mark.parametrize("rule_name", ["id", "ood"])
def test_compact_answers_score_plus_5_in_both_reward_modes(rule_name):
    rule, rng = RULES[rule_name], random.Random(3)
    for _ in range(100):
        cards = sample_hand(rng, rule)
        values = card_values(cards, rule)
        text = render_completion(cards, rule, solve(values, rule.target), "compact")
        answer = json.loads(text)
        assert answer["number"] == list(values) and answer["cards"] == list(cards)
        assert " " not in answer["formula"] and answer["formula"].endswith(f"={rule.target}")
        assert "\n" not in text
        for mode in ("strict", "published"):
            verdict = score(text, cards, rule, mode=mode)
            assert verdict.success and verdict.reward == 5 and verdict.number_correct
        # the spaced format is illegal for the published reading (spaces in the formula)
        spaced = render_completion(cards, rule, solve(values, rule.target))
        assert score(spaced, cards, rule, mode="published").reward == -3
    with pytest.raises(ValueError, match="answer_format"):
        render_completion(cards, rule, "1", "pretty")
