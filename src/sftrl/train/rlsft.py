"""The RL -> SFT branch (arXiv 2601.07389, claim 2): SFT that follows RL lowers RL's reward.

Runs the project's SFT (`sftrl.train.sft.train_sft`, the same code and defaults as the SFT
stage) starting from an RL result, and every `track_every` optimizer steps (and before the
first step) measures mean@1 on RL prompts: one greedy answer per prompt on the first
`reward_rows` rows of `rl_prompts.parquet` (hands the RL stage trained on; the question is what
SFT does to the reward RL reached). Writes `metrics.jsonl` (step, epoch, reward = mean of the
published table, success rate), the SFT logs (`train_log.jsonl`, `heldout_loss.jsonl`) and
`final/`.

Stage entry: `python -m sftrl.jobs --spec ...` (plain python or `accelerate launch`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sftrl.train import resume, rl_common
from sftrl.train.common import (
    append_jsonl,
    defaults,
    read_jsonl,
    read_rows,
    stage_params,
    with_artifact,
)


@dataclass(frozen=True)
class RLSFTParams:
    """The RL -> SFT stage's parameters (config `rlsft`; the schema holds the same defaults)."""

    epochs: float = 1.0  # SFT epochs over sft_train (fractions allowed)
    sft: dict = field(default_factory=dict)  # overrides of sftrl.train.sft's params (lr, ...)
    track_every: int = 10  # optimizer steps between reward measurements
    reward_split: str = "rl_prompts"  # parquet split the reward is measured on
    reward_rows: int = 256  # its first N rows
    max_new_tokens: int = 64
    eval_batch_size: int = 64
    reward_mode: str = "strict"  # config reward.mode: "strict" | "published"
    prompt_format: str = "raw"  # config model.prompt_format: SFT and the tracker render alike
    seed: int = 0  # SFT seed and data order (unless "sft" sets them)


DEFAULT_PARAMS: dict = defaults(RLSFTParams)


def measure_reward(
    model,
    tokenizer,
    rows: Sequence[dict],
    max_new_tokens: int,
    batch_size: int,
    reward_mode: str = "strict",
    prompt_format: str = "raw",
) -> dict:
    """mean@1 with greedy decoding: mean reward (the published table, read in `reward_mode`)
    and success rate over `rows`."""
    from sftrl.evaluate import generate, render_prompts  # rendering: sftrl.chat (models, #11)

    was_training = model.training
    model.eval()
    answers = generate(
        model,
        tokenizer,
        render_prompts(tokenizer, rows, prompt_format),
        max_new_tokens=max_new_tokens,
        temperature=0.0,
        batch_size=batch_size,
        prompt_format=prompt_format,
    )
    model.train(was_training)
    texts = [a[0] for a in answers]
    rewards, successes = rl_common.score_batch(texts, rows, "published", reward_mode)
    return {"reward": sum(rewards) / len(rewards), "success": sum(successes) / len(successes)}


def _tracker(measure: Callable[[object], dict], every: int, out: Path | None, history: list):
    from transformers import TrainerCallback

    class TrackReward(TrainerCallback):
        """mean@1 before training, every `every` steps and at the last step, on every process
        (a ZeRO-3 forward is collective); the main one (out not None) writes."""

        def __init__(self):
            self.t0 = time.perf_counter()

        def _record(self, state, model):
            t = time.perf_counter()
            record = {
                "step": state.global_step,
                "epoch": state.epoch or 0.0,
                **measure(model),
                "seconds": round(t - self.t0, 3),
            }
            history.append(record)
            append_jsonl(out / "metrics.jsonl" if out else None, record)

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if state.global_step == 0:  # not again when resumed
                self._record(state, model)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if rl_common.is_due(state.global_step, every, state.max_steps):
                self._record(state, model)

    return TrackReward()


def train_rlsft(
    model_dir: str | Path,
    data_dir: str | Path,
    params: dict,
    out_dir: Path | None,
    checkpointer: resume.Checkpointer | None = None,
) -> dict:
    """SFT from `model_dir` on `sft_train`, tracking mean@1 on RL prompts; saves `final/`.
    With a `checkpointer`, a rerun resumes (sftrl.train.resume)."""
    from sftrl.modeling import load_tokenizer
    from sftrl.train.sft import DEFAULT_PARAMS as SFT_DEFAULTS
    from sftrl.train.sft import epoch_tag, train_sft

    p = stage_params(RLSFTParams, params)
    data = Path(data_dir)
    # the engine settings reach the SFT run beside its own params
    engine_keys = {k: params[k] for k in ("distributed", "world_size", "model") if k in params}
    sft_params = {
        **SFT_DEFAULTS,
        "seed": p.seed,
        "data_seed": p.seed,
        **p.sft,
        "prompt_format": p.prompt_format,
        **engine_keys,
    }
    columns = ["prompt", "completion"]
    reward_rows = read_rows(
        data / f"{p.reward_split}.parquet", ["prompt", "cards", "rule"], limit=p.reward_rows
    )
    heldout = data / "sft_heldout.parquet"
    resumed = checkpointer is not None and checkpointer.restore()[0] > 0
    history = read_jsonl(Path(out_dir) / "metrics.jsonl" if resumed and out_dir else None)
    tokenizer = load_tokenizer(model_dir, padding_side="right")

    def measure(model):
        return measure_reward(
            model,
            tokenizer,
            reward_rows,
            p.max_new_tokens,
            p.eval_batch_size,
            p.reward_mode,
            p.prompt_format,
        )

    summary = train_sft(
        model_dir,
        read_rows(data / "sft_train.parquet", columns),
        out_dir,
        params=sft_params,
        save_at_epochs=[p.epochs],
        tokenizer=tokenizer,
        heldout_rows=read_rows(heldout, columns) if heldout.exists() else (),
        callbacks=[_tracker(measure, p.track_every, out_dir, history)],
        checkpointer=checkpointer,
    )
    if out_dir is not None:
        (Path(out_dir) / epoch_tag(p.epochs)).rename(Path(out_dir) / "final")
    if history:
        summary.update(
            reward_start=history[0]["reward"],
            reward_final=history[-1]["reward"],
            success_start=history[0]["success"],
            success_final=history[-1]["success"],
        )
    return summary


def run(spec: dict) -> None:
    """Stage entry: inputs {"start_model": HF dir of the RL result, "data": data dir}."""
    inputs = spec["inputs"]
    with_artifact(
        spec,
        lambda out: train_rlsft(
            inputs["start_model"],
            inputs["data"],
            spec["params"],
            out,
            resume.checkpointer(spec, out),
        ),
        resumable=True,
    )
