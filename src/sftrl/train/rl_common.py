"""Pieces shared by the RL stages (PPO, GRPO/RLOO) and the RL -> SFT branch.

- rewards: the published GeneralPoints table (default) or success-only (1 correct, else 0);
- hands: the RL prompt rows, cycled in a seeded order;
- checkpoints: `step-<k>/` and `final/` HF directories (policy only);
- the non-decoupling probe (arXiv 2601.07389): SFT cross-entropy on a held-out SFT slice,
  written to `sft_loss.jsonl` with the base and start models as reference rows;
- the manifest summary of a run.
Spec, process and artifact plumbing is `sftrl.train.common`'s; the engine `sftrl.train.engine`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path

from sftrl.train.common import append_jsonl, read_jsonl, read_rows, with_artifact

REWARD_KINDS = ("published", "success")


# ----------------------------------------------------------------------------- rewards


@lru_cache(maxsize=64)
def _rule(rule_json: str):
    from sftrl.game import Rule

    return Rule.from_json(rule_json)


def score_answer(
    text: str,
    cards: Sequence[str],
    rule_json: str,
    kind: str = "published",
    mode: str = "strict",
    with_reason: bool = False,
):
    """(reward, success) of one answer. `kind`: 'published' = the paper's table (+5 correct,
    +1 valid prefix, -1 wrong, -2/-3 deductions); 'success' = 1.0 if correct else 0.0.
    `mode`: the reward mode, how an answer is read (`sftrl.game.score`, config reward.mode).
    `with_reason`: (reward, success, the verdict's reason), the text of a feedback turn."""
    from sftrl.game import score

    if kind not in REWARD_KINDS:
        raise ValueError(f"reward must be one of {REWARD_KINDS}, got {kind!r}")
    verdict = score(text, list(cards), _rule(rule_json), mode=mode)
    success = bool(verdict.success)
    reward = float(verdict.reward) if kind == "published" else float(success)
    return (reward, success, str(verdict.reason)) if with_reason else (reward, success)


def score_batch(
    texts: Sequence[str],
    rows: Sequence[dict],
    kind: str = "published",
    mode: str = "strict",
    with_reasons: bool = False,
):
    """Lists (rewards, successes) for answers to the hands in `rows` ('cards', 'rule'), plus
    the verdicts' reasons with `with_reasons` (what multi-turn episodes feed back)."""
    scored = [
        score_answer(t, r["cards"], r["rule"], kind, mode, with_reasons)
        for t, r in zip(texts, rows, strict=True)
    ]
    return tuple([x[i] for x in scored] for i in range(3 if with_reasons else 2))


# ----------------------------------------------------------------------------- context

# Allowance for one feedback turn in tokens ("You failed this trial because <reason> ."): 13 for
# a wrong value ("the formula evaluates to 20 not 24"), ~20 for one wrong number ("... uses 10
# which is not one of the cards and does not use 12"), ~30 for two (an OOD hand read with faces
# as 10); an answer whose 4 numbers are all off the cards gets up to 67. Measured: the longest
# 5-try transcript of SFT-format wrong answers (faces as 10 or wrong formulas) is 397 tokens.
FEEDBACK_TOKENS = 32


def _token_count(text: str, number_tokens: str = "word") -> int:
    """Tokens of `text` for the tiny tokenizer (sftrl.modeling): one per word plus BOS; with
    digit tokens a number is a space token plus one token per digit."""
    words = text.split()
    if number_tokens == "digits":
        return 1 + sum(1 + len(w) if w.isdigit() else 1 for w in words)
    return 1 + len(words)


def longest_prompt_tokens(config: dict) -> int:
    """Tokens of the longest hand prompt any configured rule renders (tiny tokenizer)."""
    from sftrl.game import Rule, render_prompt

    number_tokens = config.get("model", {}).get("tiny", {}).get("number_tokens", "word")
    longest = 0
    for name, rule_cfg in config["game"]["rules"].items():
        rule = Rule.from_config({"name": name, **rule_cfg})
        cards = ["10"] * rule.n_cards  # the longest label (two digit tokens with digits)
        longest = max(longest, _token_count(render_prompt(cards, rule), number_tokens))
    return longest


def multi_try_context_length(
    prompt_tokens: int, max_tries: int, max_new_tokens: int, feedback_tokens: int = FEEDBACK_TOKENS
) -> int:
    """Positions the last attempt of a `max_tries` episode may reach: the prompt, every answer
    (at most `max_new_tokens`) and a feedback turn after each failed attempt."""
    return prompt_tokens + max_tries * max_new_tokens + (max_tries - 1) * feedback_tokens


def check_multi_try_context(config: dict, feedback_tokens: int = FEEDBACK_TOKENS) -> None:
    """Plan-time: for the tiny model, the multi-try transcripts of PPO (rl.ppo.max_tries,
    rl.ppo.max_new_tokens) and of evaluation (eval.multi_try, eval.decoding.max_new_tokens)
    must fit model.tiny.max_position_embeddings. Raises sftrl.config.ConfigError naming the
    keys. Other models: no check (their context is far longer)."""
    from sftrl.config import ConfigError

    model = config.get("model", {})
    if model.get("source", "tiny") != "tiny":
        return
    limit = int(model.get("tiny", {}).get("max_position_embeddings", 256))
    prompt = longest_prompt_tokens(config)
    uses = []
    rl = config.get("rl", {})
    if "ppo" in rl.get("algorithms", ["ppo"]):
        ppo = rl.get("ppo", {})
        tries, new = int(ppo.get("max_tries", 1)), int(ppo.get("max_new_tokens", 56))
        uses.append(("rl.ppo.max_tries", tries, "rl.ppo.max_new_tokens", new))
    ev = config.get("eval", {})
    multi = ev.get("multi_try", {})
    if multi.get("enabled", False):
        tries = int(multi.get("max_tries", 5))
        new = int(ev.get("decoding", {}).get("max_new_tokens", 64))
        uses.append(("eval.multi_try.max_tries", tries, "eval.decoding.max_new_tokens", new))
    problems = []
    for tries_key, tries, new_key, new in uses:
        need = multi_try_context_length(prompt, tries, new, feedback_tokens)
        if need > limit:
            problems.append(
                f"{tries_key} = {tries} with {new_key} = {new}: a transcript reaches {need} "
                f"positions ({prompt} prompt + {tries} x {new} answer + {tries - 1} x "
                f"{feedback_tokens} feedback tokens) > model.tiny.max_position_embeddings = "
                f"{limit}; raise model.tiny.max_position_embeddings or lower {tries_key}"
            )
    if problems:
        raise ConfigError("; ".join(problems))


# ----------------------------------------------------------------------------- hands


def rl_rows(data_dir: str | Path) -> list[dict]:
    """The RL hands (train rule, training multisets only): prompt, cards, rule."""
    return read_rows(Path(data_dir) / "rl_prompts.parquet", ["prompt", "cards", "rule"])


def cycle_rows(rows: Sequence[dict], seed: int) -> Iterator[dict]:
    """Endless stream over `rows`: a fresh seeded permutation on every pass."""
    if not rows:
        raise ValueError("no RL prompt rows")
    rng = random.Random(f"rl-hands:{seed}")
    while True:
        order = list(range(len(rows)))
        rng.shuffle(order)
        for i in order:
            yield rows[i]


def take(stream: Iterator[dict], n: int) -> list[dict]:
    return [next(stream) for _ in range(n)]


# ----------------------------------------------------------------------------- files


def checkpoint_name(step: int | None) -> str:
    return "final" if step is None else f"step-{step}"


def save_policy(acc, model, tokenizer, out_dir: str | Path | None, step: int | None, dist):
    """Write the policy as a complete HF directory `step-<k>/` (or `final/` for step None) in
    `dist.save_dtype`. Every process calls it (ZeRO-3 gathers); the main one writes."""
    from sftrl.train.engine import save_checkpoint

    path = Path(out_dir) / checkpoint_name(step) if out_dir is not None else None
    return save_checkpoint(acc, model, tokenizer, path, dist)


def is_due(step: int, every: int, last: int) -> bool:
    """True at every `every`-th step and at the last one (every <= 0: only the last)."""
    return step == last or (every > 0 and step % every == 0)


# ----------------------------------------------------------------------------- SFT loss probe


class SftLossTracker:
    """The non-decoupling probe: SFT cross-entropy (mean over completion tokens, the quantity
    SFT minimises) of the current policy on the first `n_rows` rows of `sft_heldout.parquet`.

    Rows of `sft_loss.jsonl`: {"model": "base"|"start"|"policy", "step": k|None, "loss": x}.
    The base and start rows are references (RL raising the loss above them is claim (1) of
    arXiv 2601.07389).
    """

    def __init__(
        self,
        data_dir: str | Path,
        out_dir: str | Path | None,
        n_rows: int = 256,
        batch_size: int = 64,
        prompt_format: str = "raw",
    ):
        self.rows = read_rows(
            Path(data_dir) / "sft_heldout.parquet", ["prompt", "completion"], limit=n_rows
        )
        self.path = Path(out_dir) / "sft_loss.jsonl" if out_dir is not None else None
        self.batch_size = batch_size
        self.prompt_format = prompt_format  # rendered as in SFT (sftrl.chat)
        self.history: list[dict] = []

    def measure(self, model, tokenizer, name: str, step: int | None) -> float:
        from sftrl.train.sft import sft_loss

        loss = sft_loss(model, tokenizer, self.rows, self.batch_size, self.prompt_format)
        record = {"model": name, "step": step, "loss": loss, "rows": len(self.rows)}
        self.history.append(record)
        append_jsonl(self.path, record)
        return loss

    def reference(self, model_dir: str | Path, name: str) -> float:
        """Loss of a saved model (e.g. the base model) as a reference row."""
        from sftrl.modeling import load_model, load_tokenizer

        model = load_model(model_dir)
        loss = self.measure(model, load_tokenizer(model_dir), name, None)
        del model
        return loss


def sft_loss_probe(
    data_dir: str | Path,
    out_dir: Path | None,
    p,
    tokenizer,
    base_model: str | Path | None = None,
    resumed: bool = False,
) -> tuple[SftLossTracker | None, Callable[[int, object], None] | None]:
    """The probe of an RL run (params `p`: sft_loss_every/_rows/_batch_size): a reference row
    of the base model now, then `on_checkpoint(step, policy)`, which the training loop calls at
    step 0 (the start model, once the engine holds it) and every `sft_loss_every` steps. Runs on
    every process (a ZeRO-3 forward is collective); only the main one (out_dir) writes. A
    `resumed` run reads back the rows it wrote before its checkpoint."""
    if p.sft_loss_every <= 0:
        return None, None
    from sftrl.train.engine import whole_model_loading

    probe = SftLossTracker(
        data_dir, out_dir, p.sft_loss_rows, p.sft_loss_batch_size, p.prompt_format
    )
    if resumed:
        probe.history = read_jsonl(probe.path)
    elif base_model is not None:
        with whole_model_loading():  # a plain model outside the engine, even under ZeRO-3
            probe.reference(base_model, "base")

    def on_checkpoint(step, policy):
        probe.measure(policy, tokenizer, "start" if step == 0 else "policy", step)

    return probe, on_checkpoint


def probe_summary(probe: SftLossTracker | None) -> dict:
    """{"sft_loss": {"base"|"start"|"final": loss}} for the manifest ({} without a probe)."""
    if probe is None:
        return {}
    return {
        "sft_loss": {
            r["model"] if r["model"] != "policy" else "final": r["loss"] for r in probe.history
        }
    }


# ----------------------------------------------------------------------------- stage


def run_stage(spec: dict, train_from_dirs: Callable[..., dict]) -> None:
    """An RL stage's entry: inputs {"start_model": HF dir, "base_model": HF dir, "data": data
    dir}; `train_from_dirs(start, data, params, out_dir, base, checkpointer)` runs on every
    process, resumable (sftrl.train.resume)."""
    from sftrl.train.resume import checkpointer

    inputs = spec["inputs"]
    with_artifact(
        spec,
        lambda out: train_from_dirs(
            inputs["start_model"],
            inputs["data"],
            spec["params"],
            out,
            inputs.get("base_model"),
            checkpointer(spec, out),
        ),
        resumable=True,
    )


# ----------------------------------------------------------------------------- summary


def run_summary(history: list[dict], **fields) -> dict:
    """The manifest summary of an RL run: reward over the first and last tenth of its updates,
    time split into rollout and learning, plus the algorithm's own `fields`."""

    def mean(key: str, part: list[dict]) -> float | None:
        vals = [h[key] for h in part if h.get(key) is not None]
        return sum(vals) / len(vals) if vals else None

    k = max(1, len(history) // 10)
    return {
        **fields,
        "steps": len(history),
        "reward_first": mean("reward", history[:k]),
        "reward_last": mean("reward", history[-k:]),
        "success_last": mean("success", history[-k:]),
        "kl_start_last": mean("kl_start", history[-k:]),
        "seconds_rollout": round(sum(h["seconds_rollout"] for h in history), 2),
        "seconds_learn": round(sum(h["seconds_learn"] for h in history), 2),
    }
