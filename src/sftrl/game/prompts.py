"""Prompt, completion and feedback text in the spaced text format (docs/architecture.md).

Every token is separated by one space, numbers are whole tokens, and the JSON in completions
stays valid JSON. The formula string is written with its quotes as separate tokens,
`"formula" : " ( 10 - 4 ) * ( 2 + 2 ) = 24 "`, so that no number is glued to a quote
(`"10` or `24"` would be different tokens from `10` and `24` for a word-level tokenizer);
parsers strip the spaces inside the string.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sftrl.game.formula import format_formula
from sftrl.game.reward import MAX_SPOKEN_NUMBER, reason_vocabulary
from sftrl.game.rules import LABELS, RULES, Rule, card_values, rule_sentence

# config data.answer_format: "spaced" (the tiny word-level tokenizer's format) or "compact"
# (one-line JSON as json.dumps writes it, the formula without spaces: the format the published
# reward reads, docs/science.md section 2)
ANSWER_FORMATS = ("spaced", "compact")
OPERATOR_TOKENS = ("+", "-", "*", "/", "(", ")", "=")
JSON_TOKENS = ("{", "}", "[", "]", ":", ",", '"', '"cards"', '"number"', '"formula"')


def render_prompt(cards: Sequence[str], rule: Rule) -> str:
    """Task, rule, cards and output spec (~70 whitespace tokens for a 4-card hand)."""
    t = rule.target
    return (
        f"You are an expert {t} point player . Rule : {rule_sentence(rule)} "
        f"Cards : {' , '.join(cards)} . "
        f"Use each card exactly once with + - * / ( ) to make {t} . "
        f'Answer with a JSON object with "cards" , "number" ( the card values ) '
        f'and "formula" ( an equation equal to {t} ) .'
    )


def render_completion(
    cards: Sequence[str], rule: Rule, formula: str, answer_format: str = "spaced"
) -> str:
    """The JSON answer in `answer_format` (ANSWER_FORMATS); `formula` is the left-hand side (any
    spacing, anything from '=' on is dropped) and "= target" is appended. `json.loads` of the
    result works."""
    values = card_values(cards, rule)
    lhs = format_formula(formula.split("=", 1)[0])
    if answer_format == "compact":
        answer = {"cards": list(cards), "number": list(values), "formula": lhs.replace(" ", "")}
        answer["formula"] += f"={rule.target}"
        return json.dumps(answer)
    if answer_format != "spaced":
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    quoted_cards = " , ".join(f'"{c}"' for c in cards)
    numbers = " , ".join(str(v) for v in values)
    return (
        f'{{ "cards" : [ {quoted_cards} ] , "number" : [ {numbers} ] , '
        f'"formula" : " {lhs} = {rule.target} " }}'
    )


def render_feedback(previous_answer: str, reason: str) -> str:
    """The verifier's message after a failed attempt (multi-try verification).

    As in the published environment, the next input is prompt + answer + this message, so the
    caller's transcript already shows the model its answer; repeating `previous_answer` here
    would duplicate it. The parameter stays so the signature names what the message is about.
    """
    del previous_answer  # shown by the caller's transcript (see above)
    reason = reason.strip().rstrip(".").strip()
    return f"You failed this trial because {reason} ."


def vocabulary() -> list[str]:
    """Every whitespace token the templates here (and the reward's reasons) can produce.

    Template words are collected by rendering the templates, so editing a template can never
    leave a word out. A model's own answer echoed in feedback may of course hold anything.
    """
    words: set[str] = set(OPERATOR_TOKENS) | set(JSON_TOKENS) | reason_vocabulary()
    words |= set(LABELS) | {f'"{label}"' for label in LABELS}
    words |= {str(n) for n in range(MAX_SPOKEN_NUMBER + 1)}
    for rule in RULES.values():
        hand = list(LABELS[: rule.n_cards])
        words |= {str(rule.target)} | {str(v) for v in rule.face_values}
        words.update(render_prompt(hand, rule).split())
        words.update(render_completion(hand, rule, "1").split())
    words.update(render_feedback("", "x").split())
    words.discard("x")
    return sorted(words)
