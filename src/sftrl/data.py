"""The data stage: SFT, RL-prompt and evaluation sets of GeneralPoints hands.

Splits (parquet, one row per hand; columns in docs/architecture.md):
- sft_train / sft_heldout: train-rule hands with a solver completion;
- rl_prompts: train-rule prompts for RL;
- eval_id_seen / eval_id_unseen: train-rule hands whose value multiset is / is not among the
  multisets SFT and RL may train on;
- eval_ood: hands under the OOD rule;
- eval_ood_select (`ood_selection: split`, the default): OOD hands on which the SFT OOD peak
  (the surgery donor, a spectrum reference) is picked. The OOD value multisets are halved
  (seeded): eval_ood draws from one half, eval_ood_select from the other, so the reported OOD
  numbers never come from the hands the pick was made on. `ood_selection: reported` (the
  published code's way) draws eval_ood from every OOD multiset and picks on it.
A fraction of the solvable train-rule value multisets is held out ("unseen"): none of them
appears in sft_train, sft_heldout or rl_prompts. The manifest summary records the overlaps.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import combinations_with_replacement
from pathlib import Path
from typing import Any

from sftrl.game import (
    FACE_LABELS,
    LABELS,
    Rule,
    card_values,
    id_multiset_key,
    is_solvable,
    render_completion,
    render_prompt,
    sample_hand,
    solve,
)
from sftrl.game.rules import MAX_DRAWS

TRAIN_SPLITS = ("sft_train", "sft_heldout", "rl_prompts")
# Evaluation splits (ID rule on seen / unseen multisets, OOD rule): the one list of them, read by
# evaluation, tables and figures; their data sets are eval_<split>.parquet.
EVAL_SPLITS = ("id_seen", "id_unseen", "ood")
SELECT_SPLIT = "ood_select"  # OOD hands the OOD peak is picked on (never reported)
OOD_SELECTIONS = ("split", "reported")
SPLITS = (*TRAIN_SPLITS, *(f"eval_{split}" for split in (*EVAL_SPLITS, SELECT_SPLIT)))


def peak_split(data_params: dict[str, Any]) -> str:
    """The evaluation split the SFT OOD peak is picked on (module docstring)."""
    return SELECT_SPLIT if data_params.get("ood_selection", "split") == "split" else "ood"


def rule_from_params(params: dict[str, Any]) -> Rule:
    return Rule.from_config(params)


@lru_cache(maxsize=8)
def id_hand_counts(rule: Rule) -> dict[str, int]:
    """ID multiset key -> number of distinct solvable hands (ordered label tuples) under `rule`.

    Only hands `sample_hand` can draw count (at least `min_face_cards` face cards). Keyed like
    the hands themselves (`id_multiset_key`, J/Q/K = 10), not by the rule's face values: a key
    computed with the rule's values would never match a drawn hand. Cached; do not modify.
    """
    counts: Counter[str] = Counter()
    for labels in combinations_with_replacement(LABELS, rule.n_cards):
        if sum(label in FACE_LABELS for label in labels) < rule.min_face_cards:
            continue
        if not is_solvable(card_values(labels, rule), rule.target):
            continue
        orderings = math.factorial(len(labels))
        for repeat in Counter(labels).values():
            orderings //= math.factorial(repeat)
        counts[id_multiset_key(labels)] += orderings
    return dict(counts)


def solvable_multisets(rule: Rule) -> list[str]:
    """Sorted ID multiset keys (values joined by '-') of the hands `rule` can deal solvable."""
    return sorted(id_hand_counts(rule))


def split_multisets(keys: Sequence[str], fraction: float, seed: int | str) -> tuple[set, set]:
    """Seeded (seen, unseen) partition of multiset keys; unseen gets round(fraction * n)."""
    order = sorted(keys)
    random.Random(f"{seed}:unseen").shuffle(order)
    n_unseen = max(1, round(fraction * len(order)))
    return set(order[n_unseen:]), set(order[:n_unseen])


def ood_halves(ood_multisets: Sequence[str], seed: int) -> tuple[set, set]:
    """(reported, selection) halves of the OOD value multisets (`ood_selection: split`)."""
    return split_multisets(ood_multisets, 0.5, f"{seed}:ood-select")


def draw_hands(
    rng: random.Random, rule: Rule, n: int, keep: Callable[[str], bool], what: str = "hands"
) -> list[tuple[str, ...]]:
    """n solvable hands under `rule` whose ID multiset key passes `keep` (rejection sampling).

    Raises ValueError after MAX_DRAWS rejections in a row: the allowed hands are (nearly) never
    dealt, and the loop would otherwise spin forever.
    """
    hands: list[tuple[str, ...]] = []
    misses = 0
    while len(hands) < n:
        hand = sample_hand(rng, rule, solvable_only=True)
        if keep(id_multiset_key(hand)):
            hands.append(hand)
            misses = 0
            continue
        misses += 1
        if misses >= MAX_DRAWS:
            raise ValueError(
                f"{what}: no allowed hand in {MAX_DRAWS} draws in a row under rule "
                f"{rule.to_json()} ({len(hands)} of {n} drawn); the rule deals (almost) no hand "
                "of the multisets this split may use"
            )
    return hands


def make_rows(
    hands: Sequence[Sequence[str]], rule: Rule, with_completion: bool, answer_format: str = "spaced"
) -> list[dict]:
    rows = []
    for hand in hands:
        values = list(card_values(hand, rule))
        row = {
            "prompt": render_prompt(hand, rule),
            "cards": list(hand),
            "values": values,
            "rule": rule.to_json(),
            "multiset": id_multiset_key(hand),
        }
        if with_completion:
            formula = solve(values, rule.target)
            row["completion"] = render_completion(hand, rule, formula, answer_format)
        rows.append(row)
    return rows


def build_splits(params: dict[str, Any]) -> tuple[dict[str, list[dict]], dict[str, Any]]:
    """All splits as lists of rows, and the summary (sizes, multiset overlaps)."""
    train_rule = rule_from_params(params["train_rule"])
    ood_rule = rule_from_params(params["ood_rule"])
    seed = params["seed"]
    seen, unseen = split_multisets(solvable_multisets(train_rule), params["unseen_fraction"], seed)
    selecting = peak_split(params) == SELECT_SPLIT
    # (reported, selection) halves of the OOD multisets; every one is reported without a split
    ood_report, ood_select = (
        ood_halves(solvable_multisets(ood_rule), seed) if selecting else (None, None)
    )

    def rng(split: str) -> random.Random:
        # one independent, named stream per split: resizing one split leaves the others alone
        return random.Random(f"{seed}:{split}")

    sizes = {
        "sft_train": params["sft_hands"],
        "sft_heldout": params["sft_heldout_hands"],
        "rl_prompts": params["rl_hands"],
        "eval_id_seen": params["eval_hands"],
        "eval_id_unseen": params["eval_hands"],
        "eval_ood": params["eval_hands"],
        f"eval_{SELECT_SPLIT}": params.get("select_hands", params["eval_hands"]),
    }
    # split -> (rule, which ID multisets it may draw from)
    sources = {
        "sft_train": (train_rule, seen),
        "sft_heldout": (train_rule, seen),
        "rl_prompts": (train_rule, seen),
        "eval_id_seen": (train_rule, seen),
        "eval_id_unseen": (train_rule, unseen),
        "eval_ood": (ood_rule, ood_report),
    }
    if selecting:
        sources[f"eval_{SELECT_SPLIT}"] = (ood_rule, ood_select)
    rows = {}
    for split, (rule, allowed) in sources.items():
        keep = allowed.__contains__ if allowed is not None else (lambda _key: True)
        hands = draw_hands(rng(split), rule, sizes[split], keep, what=f"split {split}")
        with_completion = split.startswith("sft")
        rows[split] = make_rows(hands, rule, with_completion, params["answer_format"])
    summary = overlap_summary(rows, seen, unseen)
    return rows, summary


def overlap_summary(rows: dict[str, list[dict]], seen: set, unseen: set) -> dict[str, Any]:
    multisets = {split: {r["multiset"] for r in split_rows} for split, split_rows in rows.items()}
    train = set().union(*(multisets[s] for s in TRAIN_SPLITS))
    return {
        "rows": {split: len(r) for split, r in rows.items()},
        "distinct_multisets": {split: len(m) for split, m in multisets.items()},
        "seen_multisets": len(seen),
        "unseen_multisets": sorted(unseen),
        # the guarantee the seen/unseen split exists for: both must be 0
        "unseen_in_training": len(train & unseen),
        "eval_id_unseen_in_training": len(multisets["eval_id_unseen"] & train),
        "eval_id_seen_in_training": len(multisets["eval_id_seen"] & train),
        # the guarantee the selection split exists for: 0 (or None without one)
        "ood_select_in_eval_ood": (
            len(multisets[f"eval_{SELECT_SPLIT}"] & multisets["eval_ood"])
            if f"eval_{SELECT_SPLIT}" in multisets
            else None
        ),
    }


def write_splits(rows: dict[str, list[dict]], out_dir: Path) -> None:
    import datasets  # heavy import, only where the files are written

    for split, split_rows in rows.items():
        datasets.Dataset.from_list(split_rows).to_parquet(str(out_dir / f"{split}.parquet"))


def run(spec: dict[str, Any]) -> None:
    from sftrl.store import open_artifact

    rows, summary = build_splits(spec["params"])
    if summary["unseen_in_training"] or summary["eval_id_unseen_in_training"]:
        raise RuntimeError(f"held-out multisets leaked into training data: {summary}")
    if summary["ood_select_in_eval_ood"]:
        raise RuntimeError(f"OOD selection multisets leaked into eval_ood: {summary}")
    with open_artifact(spec) as art:
        write_splits(rows, Path(art.path))
        art.summary.update(summary)
