"""Pre-training corpus: rule-conditioned arithmetic over all value multisets.

Why this mix (shared/docs/TINY-SCALE.md, second prototype): a tiny model only reads the
face-card rule from a prompt if pre-training made it do so in the SAME surface format it is
later evaluated in. So each line draws a face-card rule (the ID rule J=Q=K=10, the OOD rule
J/Q/K=11/12/13, or random face values) and one of four formats:

    mapping   cards K 2 Q 7 | rule J is 11 , Q is 12 , K is 13 . | numbers 13 2 12 7
    solve     target 18 | numbers 2 13 2 12 | formula 13 + 2 + 2 / 2 ... = 18
    full      cards ... | rule ... | target 24 | numbers ... | formula ... = 24
    verbose   render_prompt(...) render_completion(...)   (the SFT/eval format)
    feedback  a verbose line as a multi-try transcript (option feedback_fraction): prompt,
              wrong answer, "You failed this trial because <reason> .", ..., correct answer

Two exclusions keep the evaluation honest:
- verbose lines never use the reserved target (24): "verbose format + target 24" is what SFT
  teaches and evaluation measures;
- no reserved-target line of any format for a held-out ID multiset (`exclude_id_multisets`,
  the data stage's unseen split), matched on the hand's ID-rule key AND on its value multiset,
  so ID-unseen evaluation stays unseen.

Formulas are the game solver's canonical solutions (the ones the SFT data uses), cached per
(value multiset, target): all 1820 multisets of 1..13 take about half a second per target.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable

# The embedded default. Compared with an even mix, fewer mapping lines (the model reads card
# values perfectly early) and more target-24 solve lines and OOD-rule lines doubled the base
# model's compact-format 24 accuracy; verbose lines stay at 15% so rule reading survives SFT.
# (Seventeen targets instead of six, meant to make 24 an interpolation in the verbose prompt,
# did not help over two pre-training seeds and costs 4 s more of solver tables.)
DEFAULT_CORPUS: dict = {
    "targets": [24, 10, 12, 18, 30, 36],
    "reserved_target": 24,  # the SFT/eval target
    "reserved_target_fraction": 0.9,  # share of compact solve/full lines that use it
    "verbose_fraction": 0.15,  # lines in the SFT/eval format (other targets only)
    # share of verbose lines written as multi-try transcripts (1..feedback_max_wrong wrong
    # answers with the verifier's feedback, then the right one); 0: the corpus is unchanged
    "feedback_fraction": 0.0,
    "feedback_max_wrong": 1,
    "format_weights": {"mapping": 0.25, "solve": 1.5, "full": 1.0},
    "rule_weights": {"id": 1.0, "ood": 1.5, "random": 1.0},
    "random_face_range": [1, 13],  # face values of the "random" rules
    "rules": None,  # rule table {name: Rule or its config}; None: sftrl.game.RULES
    "random_base": "id",  # "random" rules copy this rule's target/n_cards/min_face_cards
}


# ----------------------------------------------------------------------------- lines


def multiset_key(values: Iterable[int]) -> str:
    """Sorted values joined by '-' (the data stage's `multiset` format)."""
    return "-".join(str(v) for v in sorted(values))


def rule_text(rule) -> str:
    """The verbose prompt's own rule sentence: shared words help transfer between formats."""
    from sftrl.game import rule_sentence

    return f"rule {rule_sentence(rule)}"


def compact_line(fmt: str, cards, values, rule, target: int | None, formula: str | None) -> str:
    from sftrl.game import format_formula

    cards_text = "cards " + " ".join(cards)
    numbers = "numbers " + " ".join(str(v) for v in values)
    if fmt == "mapping":
        return f"{cards_text} | {rule_text(rule)} | {numbers}"
    solved = f"formula {format_formula(formula)} = {target}"
    if fmt == "solve":
        return f"target {target} | {numbers} | {solved}"
    if fmt == "full":
        return f"{cards_text} | {rule_text(rule)} | target {target} | {numbers} | {solved}"
    raise ValueError(f"unknown compact format {fmt!r}")


def verbose_line(cards, rule, formula: str) -> str:
    """The SFT/eval text: prompt then completion, joined the way SFT training joins them."""
    from sftrl.game import render_completion, render_prompt

    prompt = render_prompt(cards, rule)
    completion = render_completion(cards, rule, formula)
    return " ".join((prompt.strip(), completion.strip()))


def feedback_messages(cards, rule, wrong: list[str], formula: str) -> list[dict[str, str]]:
    """The multi-try conversation of one hand: the prompt, each wrong answer followed by the
    verifier's feedback on it (`sftrl.game.score`'s reason, `render_feedback`), then the right
    answer: the turns `sftrl.evaluate.multi_try_verify` builds from a model's answers."""
    from sftrl import chat
    from sftrl.game import render_completion, render_feedback, render_prompt, score

    turns = [chat.user(render_prompt(cards, rule))]
    for lhs in wrong:
        answer = render_completion(cards, rule, lhs)
        verdict = score(answer, list(cards), rule)
        if verdict.success:
            raise ValueError(f"wrong answer {lhs!r} solves {list(cards)}")
        turns += [chat.assistant(answer), chat.user(render_feedback(answer, verdict.reason))]
    return turns + [chat.assistant(render_completion(cards, rule, formula))]


def feedback_line(cards, rule, wrong: list[str], formula: str) -> str:
    """A transcript as text, rendered by `sftrl.chat` in the raw format as evaluation renders
    multi-try prompts (the corpus's tokenizer adds BOS, pre-training appends EOS)."""
    from sftrl import chat

    return chat.render_prompt(None, feedback_messages(cards, rule, wrong, formula), chat.RAW)


class CorpusSampler:
    """Seeded draws of (rule, target, hand) with the exclusions described above."""

    def __init__(self, seed: int, *, exclude_id_multisets: Iterable[str] = (), **options):
        from sftrl.game import FACE_LABELS, LABELS, RULES, Rule

        unknown = set(options) - set(DEFAULT_CORPUS)
        if unknown:
            raise ValueError(f"unknown corpus options {sorted(unknown)}")
        self.opt = {**DEFAULT_CORPUS, **options}
        self.rng = random.Random(f"corpus:{seed}")
        self.excluded = frozenset(exclude_id_multisets)
        self.labels, self.faces = tuple(LABELS), tuple(FACE_LABELS)
        table = self.opt["rules"] or RULES
        self.rules = {
            name: Rule.from_config(r if isinstance(r, Rule) else {"name": name, **r})
            for name, r in table.items()
        }
        missing = set(self.opt["rule_weights"]) - set(self.rules) - {"random"}
        if missing:
            raise ValueError(f"rule_weights name rules {sorted(missing)} not in {sorted(table)}")
        if "random" in self.opt["rule_weights"]:
            if self.opt["random_base"] not in self.rules:
                raise ValueError(f"random_base {self.opt['random_base']!r} not in {sorted(table)}")
            low, high = self.opt["random_face_range"]
            if low > high:
                raise ValueError(f"random_face_range {[low, high]} is reversed")
        self.tables: dict[tuple[int, int], dict] = {}  # (target, n_cards) -> {values: solutions}
        faces = [v for r in self.rules.values() for v in r.face_values]
        self.max_value = max(13, self.opt["random_face_range"][1], *faces)
        self.reserved = self.opt["reserved_target"]
        self.other_targets = [t for t in self.opt["targets"] if t != self.reserved]
        if not self.other_targets and self.opt["verbose_fraction"] > 0:
            raise ValueError("verbose lines need at least one target besides the reserved one")

    def _choice(self, weights: dict[str, float]) -> str:
        names = sorted(weights)
        return self.rng.choices(names, weights=[weights[n] for n in names])[0]

    def rule(self, target: int):
        name = self._choice(self.opt["rule_weights"])
        if name == "random":
            lo, hi = self.opt["random_face_range"]
            faces = tuple(self.rng.randint(lo, hi) for _ in self.faces)
            base = self.rules[self.opt["random_base"]]
            return dataclasses.replace(base, name="random", face_values=faces, target=target)
        return dataclasses.replace(self.rules[name], target=target)

    def target(self, fmt: str) -> int | None:
        if fmt == "mapping":
            return None
        if fmt != "verbose" and self.rng.random() < self.opt["reserved_target_fraction"]:
            return self.reserved
        return self.rng.choice(self.other_targets)

    def hand(self, rule, target: int | None) -> tuple[tuple[str, ...], tuple[int, ...], str | None]:
        """Cards (n - m uniform labels + m face cards, shuffled; m = rule.min_face_cards),
        their values, and a solution, redrawn until solvable and not excluded."""
        from sftrl.game import card_values, id_multiset_key
        from sftrl.game.rules import MAX_DRAWS

        n, m = rule.n_cards, rule.min_face_cards
        for _ in range(MAX_DRAWS):
            cards = [self.rng.choice(self.labels) for _ in range(n - m)]
            cards += [self.rng.choice(self.faces) for _ in range(m)]
            self.rng.shuffle(cards)
            values = tuple(card_values(cards, rule))
            if target is None:
                return tuple(cards), values, None
            if target == self.reserved and (
                id_multiset_key(cards) in self.excluded or multiset_key(values) in self.excluded
            ):
                continue
            formula = self.solution(values, target, n)
            if formula is not None:
                return tuple(cards), values, formula
        raise ValueError(
            f"pretrain.corpus: no solvable, not excluded hand for target {target} in {MAX_DRAWS} "
            f"draws under rule {rule.to_json()}; check pretrain.corpus.targets and the rules"
        )

    def solution(self, values, target: int, n_cards: int) -> str | None:
        """Canonical solution from the solver's per-target table of every multiset (computing
        whole tables is ~5x faster than solving multisets one by one)."""
        from sftrl.game import solvability_table

        key = (target, n_cards)
        if key not in self.tables:
            self.tables[key] = solvability_table((1, self.max_value), n_cards, target)
        found = self.tables[key].get(tuple(sorted(values)))
        return found[0] if found else None

    def wrong_formula(self, values, rule, formula: str) -> str:
        """A plausible wrong answer's formula: a solution of the same cards for another target
        other than the reserved one (when one exists and a coin says so), else the right formula
        with one number changed (a misread card). Never a solution."""
        from sftrl.game import evaluate_formula, format_formula

        # never the reserved target: no solution for it in the verbose format (see above)
        others = [t for t in self.opt["targets"] if t not in (rule.target, self.reserved)]
        if others and self.rng.random() < 0.5:
            other = self.rng.choice(others)
            found = self.solution(values, other, rule.n_cards)
            if found is not None:
                return found
        words = format_formula(formula).split()
        spots = [i for i, w in enumerate(words) if w.isdigit()]
        for _ in range(100):
            i = self.rng.choice(spots)
            new = self.rng.randint(1, self.max_value)
            if new == int(words[i]):
                continue
            lhs = " ".join(words[:i] + [str(new)] + words[i + 1 :])
            result = evaluate_formula(lhs)
            if result.value != rule.target or result.error:
                return lhs
        raise ValueError(f"no wrong formula near {formula!r}")

    def line(self) -> str:
        verbose = self.rng.random() < self.opt["verbose_fraction"]
        fmt = "verbose" if verbose else self._choice(self.opt["format_weights"])
        target = self.target(fmt)
        rule = self.rule(target if target is not None else self.reserved)
        cards, values, formula = self.hand(rule, target)
        if fmt == "verbose":
            if self.opt["feedback_fraction"] > 0 and (
                self.rng.random() < self.opt["feedback_fraction"]
            ):
                n_wrong = self.rng.randint(1, self.opt["feedback_max_wrong"])
                wrong = [self.wrong_formula(values, rule, formula) for _ in range(n_wrong)]
                return feedback_line(cards, rule, wrong, formula)
            return verbose_line(cards, rule, formula)
        return compact_line(fmt, cards, values, rule, target, formula)


def generate_corpus(
    n_lines: int, seed: int, *, exclude_id_multisets: Iterable[str] = (), **options
) -> list[str]:
    """`n_lines` corpus lines, deterministic in (seed, options, exclusions).
    Options (defaults in DEFAULT_CORPUS): targets, reserved_target, reserved_target_fraction,
    verbose_fraction, feedback_fraction, feedback_max_wrong, format_weights, rule_weights,
    random_face_range, rules, random_base.
    Card counts, face values and min_face_cards come from each rule."""
    sampler = CorpusSampler(seed, exclude_id_multisets=exclude_id_multisets, **options)
    return [sampler.line() for _ in range(n_lines)]
