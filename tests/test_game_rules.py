"""Tests for sftrl.game.rules: labels, Rule (JSON, config), rule table, hand sampling."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from sftrl.game import (
    FACE_LABELS,
    LABELS,
    RULES,
    Rule,
    card_values,
    id_multiset_key,
    is_solvable,
    label_rank,
    rule_sentence,
    sample_hand,
)


def test_labels_and_ranks():
    assert LABELS == ("A", "2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K")
    assert [label_rank(lab) for lab in LABELS] == list(range(1, 14))
    with pytest.raises(ValueError, match="unknown card label"):
        label_rank("T")


def test_rule_table_is_the_published_pair():
    assert RULES["id"] == Rule("id", (10, 10, 10), 24, 4, 0)
    assert RULES["ood"] == Rule("ood", (11, 12, 13), 24, 4, 1)


def test_card_values_under_each_rule():
    hand = ("K", "2", "Q", "7")
    assert card_values(hand, RULES["id"]) == (10, 2, 10, 7)
    assert card_values(hand, RULES["ood"]) == (13, 2, 12, 7)
    assert card_values(("A", "10", "J"), RULES["ood"]) == (1, 10, 11)


def test_id_multiset_key_uses_the_id_mapping():
    assert id_multiset_key(("Q", "4", "A", "K")) == "1-4-10-10"
    assert id_multiset_key(("10", "J")) == "10-10"


def test_rule_json_is_canonical_and_round_trips():
    rule = RULES["ood"]
    text = rule.to_json()
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    assert " " not in text
    assert Rule.from_json(text) == rule
    assert isinstance(Rule.from_json(text).face_values, tuple)


def test_from_config_name_dict_and_errors():
    assert Rule.from_config("id") is RULES["id"]
    cfg = {
        "name": "id",
        "face_values": [10, 10, 10],
        "target": 24,
        "n_cards": 4,
        "min_face_cards": 0,
    }
    assert Rule.from_config(cfg) == RULES["id"]
    with pytest.raises(ValueError, match="'colour'"):
        Rule.from_config({"name": "x", "face_values": [1, 2, 3], "colour": "red"})
    with pytest.raises(ValueError, match="unknown rule"):
        Rule.from_config("nope")
    with pytest.raises(ValueError, match="face_values"):
        Rule.from_config({"name": "x"})
    with pytest.raises(ValueError, match="min_face_cards"):
        Rule("x", (10, 10, 10), min_face_cards=5)
    with pytest.raises(ValueError, match="integer"):
        Rule("x", (10, 10, True))


def test_rule_sentence_states_every_face_value():
    assert rule_sentence(RULES["ood"]) == "J is 11 , Q is 12 , K is 13 ."
    assert rule_sentence(RULES["id"]) == "J is 10 , Q is 10 , K is 10 ."


@pytest.mark.parametrize("name", ["id", "ood"])
def test_sample_hand_is_deterministic_given_the_rng(name):
    rule = RULES[name]
    a = [sample_hand(random.Random(7), rule) for _ in range(3)]
    rng1, rng2 = random.Random(11), random.Random(11)
    assert [sample_hand(rng1, rule) for _ in range(50)] == [
        sample_hand(rng2, rule) for _ in range(50)
    ]
    assert a[0] == a[1] == a[2]
    rng3 = random.Random(12)
    assert [sample_hand(rng3, rule) for _ in range(50)] != [
        sample_hand(random.Random(11), rule) for _ in range(50)
    ]


def test_sampled_hands_are_solvable_and_use_every_label():
    rng = random.Random(0)
    hands = [sample_hand(rng, RULES["id"]) for _ in range(400)]
    assert all(len(h) == 4 for h in hands)
    assert all(is_solvable(card_values(h, RULES["id"]), 24) for h in hands)
    assert set().union(*hands) == set(LABELS)


def test_unsolvable_hands_appear_without_solvable_only():
    rng = random.Random(0)
    hands = [sample_hand(rng, RULES["id"], solvable_only=False) for _ in range(300)]
    assert not all(is_solvable(card_values(h, RULES["id"]), 24) for h in hands)


def test_ood_hands_hold_a_face_card_in_any_position():
    rule = RULES["ood"]
    rng = random.Random(3)
    hands = [sample_hand(rng, rule) for _ in range(400)]
    assert all(any(c in FACE_LABELS for c in h) for h in hands)
    assert all(is_solvable(card_values(h, rule), 24) for h in hands)
    # shuffled: the forced face card is not always in the same slot
    slots = Counter(i for h in hands for i, c in enumerate(h) if c in FACE_LABELS)
    assert set(slots) == {0, 1, 2, 3}
    # without the solvability filter, exactly the face-card minimum still holds
    raw = [sample_hand(rng, rule, solvable_only=False) for _ in range(300)]
    assert all(any(c in FACE_LABELS for c in h) for h in raw)


def test_min_face_cards_two_for_a_five_card_variant():
    rule = Rule.from_config(
        {
            "name": "five",
            "face_values": [11, 12, 13],
            "n_cards": 5,
            "target": 30,
            "min_face_cards": 2,
        }
    )
    rng = random.Random(5)
    hands = [sample_hand(rng, rule) for _ in range(40)]
    assert all(len(h) == 5 and sum(c in FACE_LABELS for c in h) >= 2 for h in hands)
    assert all(is_solvable(card_values(h, rule), 30) for h in hands)
