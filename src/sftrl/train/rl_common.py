"""Pieces shared by the RL stages (PPO, GRPO/RLOO) and the RL -> SFT branch.

- rewards: the published GeneralPoints table (default) or success-only (1 correct, else 0);
- hands: the RL prompt rows, cycled in a seeded order;
- checkpoints: `step-<k>/` and `final/` HF directories (policy only);
- the non-decoupling probe (arXiv 2601.07389): SFT cross-entropy on a held-out SFT slice,
  written to `sft_loss.jsonl` with the base and start models as reference rows;
- job-spec plumbing for the `python -m sftrl.train.<stage> --spec ...` entry points.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path

REWARD_KINDS = ("published", "success")


# ----------------------------------------------------------------------------- rewards


@lru_cache(maxsize=64)
def _rule(rule_json: str):
    from sftrl.game import Rule

    return Rule.from_json(rule_json)


def score_answer(
    text: str, cards: Sequence[str], rule_json: str, kind: str = "published", mode: str = "strict"
):
    """(reward, success) of one answer. `kind`: 'published' = the paper's table (+5 correct,
    +1 valid prefix, -1 wrong, -2/-3 deductions); 'success' = 1.0 if correct else 0.0.
    `mode`: the reward mode, how an answer is read (`sftrl.game.score`, config reward.mode)."""
    from sftrl.game import score

    if kind not in REWARD_KINDS:
        raise ValueError(f"reward must be one of {REWARD_KINDS}, got {kind!r}")
    verdict = score(text, list(cards), _rule(rule_json), mode=mode)
    success = bool(verdict.success)
    reward = float(verdict.reward) if kind == "published" else float(success)
    return reward, success


def score_batch(
    texts: Sequence[str], rows: Sequence[dict], kind: str = "published", mode: str = "strict"
):
    """Lists (rewards, successes) for answers to the hands in `rows` ('cards', 'rule')."""
    pairs = [
        score_answer(t, r["cards"], r["rule"], kind, mode) for t, r in zip(texts, rows, strict=True)
    ]
    return [p[0] for p in pairs], [p[1] for p in pairs]


# ----------------------------------------------------------------------------- hands


def read_rows(
    path: str | Path, columns: Sequence[str] | None = None, limit: int | None = None
) -> list[dict]:
    """Rows of a parquet split as dicts (list-valued cells become Python lists)."""
    import pandas as pd

    frame = pd.read_parquet(path, columns=list(columns) if columns else None)
    if limit is not None:
        frame = frame.iloc[:limit]
    rows = frame.to_dict("records")
    for row in rows:
        for key, value in row.items():
            if hasattr(value, "tolist"):
                row[key] = value.tolist()
    return rows


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


def append_jsonl(path: str | Path | None, record: dict) -> None:
    """Append one JSON line (no-op when path is None, e.g. on non-main processes)."""
    if path is None:
        return
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def checkpoint_name(step: int | None) -> str:
    return "final" if step is None else f"step-{step}"


def save_policy(model, tokenizer, out_dir: str | Path | None, step: int | None) -> Path | None:
    """Write the policy as a complete HF directory `step-<k>/` (or `final/` for step None)."""
    if out_dir is None:
        return None
    from sftrl.modeling import save_model

    was_training = model.training
    path = save_model(model, tokenizer, Path(out_dir) / checkpoint_name(step))
    model.train(was_training)
    return path


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


# ----------------------------------------------------------------------------- job specs


def load_spec(text_or_path: str) -> dict:
    """--spec takes inline JSON or a path to a JSON file."""
    text = text_or_path.strip()
    if not text.startswith("{"):
        text = Path(text).read_text()
    return json.loads(text)


def is_main_process() -> bool:
    return process_rank() == 0


def run_stage(run: Callable[[dict], None], argv: Sequence[str] | None, doc: str) -> None:
    """`--spec JSON_OR_PATH` command line shared by the RL entry points."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--spec", required=True, help="job spec: JSON text or a JSON file")
    args = parser.parse_args(argv)
    run(load_spec(args.spec))


def with_artifact(spec: dict, body: Callable[[Path | None], dict]) -> None:
    """Run `body(out_dir)` inside `store.open_artifact(spec)` on the main process (its return
    value goes into the manifest summary); other processes get out_dir=None and write nothing."""
    if not is_main_process():
        body(None)
        return
    from sftrl.store import open_artifact

    with open_artifact(spec) as art:
        art.summary.update(body(Path(art.path)))


def process_rank() -> int:
    return int(os.environ.get("RANK", "0"))


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
