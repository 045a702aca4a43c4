"""Parse a model's answer: the first JSON object in the text, with a tolerant regex fallback.

Model output may carry junk after the JSON, be cut off mid-formula, or not be JSON at all. We
take the first decodable JSON object that has a "formula" (else the first JSON object), and
fall back to regular expressions for the "formula" and "number" fields. The formula keeps
only what comes before the first '=' ("... = 24" is the equation's right-hand side).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# Answers are short; these bounds keep parsing linear-ish on adversarial input.
MAX_TEXT = 20_000
MAX_OBJECT_STARTS = 64

# up to the closing quote, or to the end of the text when generation stopped mid-string
_FORMULA_RE = re.compile(r'"formula"\s*:\s*"([^"]*)"?')
_NUMBER_RE = re.compile(r'"number"\s*:\s*\[([^\]]*)\]')
_INT_RE = re.compile(r"\s*(-?[0-9]{1,9})\s*")


@dataclass
class ParsedAnswer:
    json_ok: bool
    cards: list | None
    number: list[int] | None
    formula: str | None


def _first_objects(text: str) -> list[dict[str, Any]]:
    decoder = json.JSONDecoder()
    objects: list[dict[str, Any]] = []
    start = text.find("{")
    tries = 0
    while start != -1 and tries < MAX_OBJECT_STARTS:
        tries += 1
        try:
            obj, end = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            start = text.find("{", start + 1)
            continue
        if isinstance(obj, dict):
            objects.append(obj)
            if "formula" in obj:
                break
        start = text.find("{", end)
    return objects


def _as_int(item: Any) -> int | None:
    if isinstance(item, bool):
        return None
    if isinstance(item, int):
        return item
    if isinstance(item, float) and item.is_integer():
        return int(item)
    if isinstance(item, str):
        match = _INT_RE.fullmatch(item)
        return int(match.group(1)) if match else None
    return None


def _number_list(value: Any) -> list[int] | None:
    """A list of integers (numeric strings accepted), or None if anything else."""
    if not isinstance(value, list):
        return None
    out = [_as_int(item) for item in value]
    return None if any(v is None for v in out) else out  # type: ignore[misc]


def _clean_formula(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        return None
    return value.split("=", 1)[0].strip()


def parse_answer(text: str) -> ParsedAnswer:
    """Fields of an answer; never raises. json_ok: a JSON object was decoded and used."""
    if not isinstance(text, str):
        return ParsedAnswer(False, None, None, None)
    text = text[:MAX_TEXT]
    objects = _first_objects(text)
    chosen = next((o for o in objects if "formula" in o), objects[0] if objects else None)

    cards = number = formula = None
    if chosen is not None:
        cards = chosen.get("cards") if isinstance(chosen.get("cards"), list) else None
        number = _number_list(chosen.get("number"))
        formula = _clean_formula(chosen.get("formula"))
    if formula is None:
        match = _FORMULA_RE.search(text)
        if match:
            formula = _clean_formula(match.group(1))
    if number is None:
        match = _NUMBER_RE.search(text)
        if match:
            parts = match.group(1).split(",")
            number = _number_list(parts) if match.group(1).strip() else []
    return ParsedAnswer(chosen is not None, cards, number, formula)
