"""Cards, face-card rules and hand sampling for GeneralPoints.

A `Rule` says what the face cards J, Q, K are worth, the target, how many cards a hand has and
how many of them must be face cards. The rule table `RULES` is data: a new variant (other face
values, another target, 5 cards) is a new entry, never new code.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from sftrl.game.solver import is_solvable

LABELS: tuple[str, ...] = ("A", "2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K")
FACE_LABELS: tuple[str, ...] = ("J", "Q", "K")
_RANK = {label: i + 1 for i, label in enumerate(LABELS)}

# Redrawing unsolvable hands loops forever for a rule with (almost) no solvable hand; fail loudly.
MAX_DRAWS = 100_000


def label_rank(label: str) -> int:
    """Rank 1..13 of a card label (A=1, J=11, Q=12, K=13)."""
    try:
        return _RANK[label]
    except (KeyError, TypeError):
        raise ValueError(f"unknown card label {label!r}; labels are {LABELS}") from None


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    # bool is an int subclass; a JSON `true` must not pass as the number 1
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"rule field {name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"rule field {name} must be {bound}, got {value}")


@dataclass(frozen=True)
class Rule:
    """A GeneralPoints rule: face-card values (J, Q, K), target, hand size, face-card minimum."""

    name: str
    face_values: tuple[int, int, int]
    target: int = 24
    n_cards: int = 4
    min_face_cards: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"rule field name must be a non-empty string, got {self.name!r}")
        faces = self.face_values
        if not isinstance(faces, list | tuple) or len(faces) != 3:
            raise ValueError(f"rule field face_values must be 3 integers (J, Q, K), got {faces!r}")
        for value in faces:
            _check_int("face_values", value, 1)
        # JSON gives lists; keep the dataclass hashable and canonical
        object.__setattr__(self, "face_values", tuple(faces))
        _check_int("target", self.target, 1)
        # the solver enumerates every bracketing: beyond 6 cards it is far too slow
        _check_int("n_cards", self.n_cards, 1, 6)
        _check_int("min_face_cards", self.min_face_cards, 0, self.n_cards)

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, compact separators (stable across runs)."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Rule:
        obj = json.loads(text)
        if not isinstance(obj, dict):
            raise ValueError(f"a rule in JSON must be an object, got {text!r}")
        return cls.from_config(obj)

    @classmethod
    def from_config(cls, obj: str | Mapping[str, Any] | Rule) -> Rule:
        """A rule from a table name ("id", "ood") or a mapping of the dataclass fields."""
        if isinstance(obj, Rule):
            return obj
        if isinstance(obj, str):
            if obj not in RULES:
                raise ValueError(f"unknown rule {obj!r}; the rule table has {sorted(RULES)}")
            return RULES[obj]
        if not isinstance(obj, Mapping):
            raise ValueError(f"a rule must be a name or a mapping, got {type(obj).__name__}")
        known = {f.name for f in fields(cls)}
        for key in obj:
            if key not in known:
                raise ValueError(f"unknown rule key {key!r}; allowed keys are {sorted(known)}")
        for key in ("name", "face_values"):
            if key not in obj:
                raise ValueError(f"rule is missing the required key {key!r}")
        return cls(**dict(obj))


# The rule table. ID: J, Q, K count as 10. OOD: J=11, Q=12, K=13 and every hand holds at least
# one face card (Chu et al., arXiv 2501.17161).
RULES: dict[str, Rule] = {
    "id": Rule(name="id", face_values=(10, 10, 10)),
    "ood": Rule(name="ood", face_values=(11, 12, 13), min_face_cards=1),
}


def card_value(label: str, rule: Rule) -> int:
    rank = label_rank(label)
    return rank if rank <= 10 else rule.face_values[rank - 11]


def card_values(cards: Sequence[str], rule: Rule) -> tuple[int, ...]:
    """Values of the cards, in order, under the rule."""
    return tuple(card_value(label, rule) for label in cards)


def id_multiset_key(cards: Sequence[str]) -> str:
    """Sorted values under the ID mapping (J/Q/K=10) joined by '-', e.g. "1-4-10-10".

    Fixed to the ID mapping on purpose: the seen/unseen split is about which value multisets
    the model trained on, and training happens under the ID rule.
    """
    return "-".join(str(v) for v in sorted(min(label_rank(c), 10) for c in cards))


def sample_hand(rng: random.Random, rule: Rule, solvable_only: bool = True) -> tuple[str, ...]:
    """A hand of labels; deterministic given the state of `rng`.

    Each card is uniform over the 13 labels, with replacement. With min_face_cards = m > 0,
    n - m cards are uniform and m are uniform over J/Q/K, then the hand is shuffled (so the
    forced face card is not always last). Unsolvable hands are redrawn when solvable_only.
    """
    n, m = rule.n_cards, rule.min_face_cards
    for _ in range(MAX_DRAWS):
        hand = [rng.choice(LABELS) for _ in range(n - m)]
        if m > 0:
            hand += [rng.choice(FACE_LABELS) for _ in range(m)]
            rng.shuffle(hand)
        if not solvable_only or is_solvable(card_values(hand, rule), rule.target):
            return tuple(hand)
    raise ValueError(f"no solvable hand in {MAX_DRAWS} draws under rule {rule.to_json()}")


def rule_sentence(rule: Rule) -> str:
    """The rule in the spaced text format, e.g. "J is 11 , Q is 12 , K is 13 ."

    The same template for every rule (even when all three are equal) so that a model can learn
    to read the values rather than memorise one sentence per rule.
    """
    parts = [
        f"{label} is {value}" for label, value in zip(FACE_LABELS, rule.face_values, strict=True)
    ]
    return " , ".join(parts) + " ."
