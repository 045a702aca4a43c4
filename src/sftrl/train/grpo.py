"""GRPO (or RLOO) through TRL's GRPOTrainer / RLOOTrainer with the GeneralPoints reward.

Each step answers `per_device_train_batch_size / num_generations` hands `num_generations`
times; the reward function calls `sftrl.game.score` on every completion (dataset columns
`cards`, `rule`) and logs the success rate. Hands come from `rl_prompts.parquet`, cycled in a
seeded order (the trainer's own shuffling is off). No KL term by default (beta 0). Writes
`metrics.jsonl` (TRL's per-step logs + rollout/learning seconds), `step-<k>/`, `final/`, and the
SFT-loss probe `sft_loss.jsonl` (arXiv 2601.07389).

Entry point (plain python or `accelerate launch`; only the main process writes):
    python -m sftrl.train.grpo --spec '{"stage": "rl", ...}'   # or --spec path/to/spec.json
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from sftrl import chat
from sftrl.train import rl_common

DEFAULT_PARAMS: dict = {
    "algorithm": "grpo",  # "grpo" | "rloo" (same interface in TRL)
    "steps": 100,  # optimizer steps
    "num_generations": 8,  # answers per hand (the group)
    "per_device_train_batch_size": 64,  # completions per step per device
    "grad_accum": 1,
    "lr": 2e-5,  # 1e-4 wrecked greedy ID success at tiny scale
    "lr_schedule": "constant",  # any transformers scheduler name
    "warmup_ratio": 0.0,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "beta": 0.0,  # KL coefficient (0: no reference model)
    "clip": 0.2,  # epsilon of the clipped ratio
    "num_iterations": 1,  # optimisation passes per generation batch
    "loss_type": "dapo",  # GRPO only (TRL default)
    "scale_rewards": "group",  # GRPO only: "group" | "batch" | "none"
    "temperature": 0.5,  # 1.0 hurt greedy ID at tiny scale; PPO uses 0.2
    "max_completion_length": 56,  # SFT answers are ~41 tokens with EOS
    "reward": "published",  # "published" | "success"
    "reward_mode": "strict",  # config reward.mode: "strict" | "published"
    "save_every": 25,
    "sft_loss_every": 25,
    "sft_loss_rows": 256,
    "sft_loss_batch_size": 64,
    "seed": 0,
}


def prompts_per_step(p: dict, world_size: int = 1) -> int:
    completions = p["per_device_train_batch_size"] * p["grad_accum"] * world_size
    if completions % p["num_generations"]:
        raise ValueError(
            "per_device_train_batch_size * grad_accum * world size must be a "
            "multiple of num_generations"
        )
    return completions // p["num_generations"]


def make_reward_func(reward_fn: Callable, columns: Sequence[str]):
    """TRL reward function: rebuilds one row per completion from the dataset `columns` and
    returns `reward_fn(completions, rows)`'s rewards; logs the success rate as 'success'."""

    def gp_reward(prompts, completions, log_metric=None, **kwargs):
        rows = [{c: kwargs[c][i] for c in columns} for i in range(len(completions))]
        texts = [chat.completion_text(c) for c in completions]  # chat: assistant turns
        rewards, successes = reward_fn(texts, rows)
        if log_metric is not None:
            log_metric("success", sum(map(float, successes)) / max(1, len(successes)))
        return [float(r) for r in rewards]

    return gp_reward


def _config(p: dict, scratch: str):
    from trl import GRPOConfig, RLOOConfig

    from sftrl.vllm_generation import grpo_vllm_args

    common = dict(
        output_dir=scratch,
        max_steps=p["steps"],
        per_device_train_batch_size=p["per_device_train_batch_size"],
        gradient_accumulation_steps=p["grad_accum"],
        num_generations=p["num_generations"],
        learning_rate=p["lr"],
        lr_scheduler_type=p["lr_schedule"],
        warmup_steps=p["warmup_ratio"],
        weight_decay=p["weight_decay"],
        max_grad_norm=p["max_grad_norm"],
        beta=p["beta"],
        epsilon=p["clip"],
        num_iterations=p["num_iterations"],
        temperature=p["temperature"],
        top_k=0,
        top_p=1.0,
        max_completion_length=p["max_completion_length"],
        seed=p["seed"],
        data_seed=p["seed"],
        full_determinism=True,
        shuffle_dataset=False,
        bf16=False,
        use_cpu=not torch.cuda.is_available(),
        activation_checkpointing=False,
        save_strategy="no",
        logging_steps=1,
        report_to=[],
        disable_tqdm=True,
        **grpo_vllm_args(p.get("backend", "hf")),  # generation backend (models, #11)
    )
    if p["algorithm"] == "grpo":
        return GRPOConfig(loss_type=p["loss_type"], scale_rewards=p["scale_rewards"], **common)
    if p["algorithm"] == "rloo":
        return RLOOConfig(**common)
    raise ValueError(f"algorithm must be 'grpo' or 'rloo', got {p['algorithm']!r}")


def _callback(tokenizer, out: Path | None, p: dict, on_checkpoint, timer: dict):
    from transformers import TrainerCallback

    class Track(TrainerCallback):
        """Logs to metrics.jsonl, saves step-<k>/, runs the SFT-loss probe (main process)."""

        def on_step_begin(self, args, state, control, **kwargs):
            timer["step_start"], timer["generate"] = time.perf_counter(), 0.0

        def on_step_end(self, args, state, control, model=None, **kwargs):
            timer["step_seconds"] = time.perf_counter() - timer["step_start"]
            step, last = state.global_step, state.max_steps
            if not state.is_world_process_zero:
                return
            if rl_common.is_due(step, p["save_every"], last) and step != last:
                rl_common.save_policy(model, tokenizer, out, step)
            if (
                on_checkpoint is not None
                and p["sft_loss_every"] > 0
                and rl_common.is_due(step, p["sft_loss_every"], last)
            ):
                on_checkpoint(step, model)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return  # the end-of-training summary has no "loss"
            rollout = timer.get("generate", 0.0)
            record = {
                "step": state.global_step,
                "reward_kind": p["reward"],
                "algorithm": p["algorithm"],
                **logs,
                "seconds_rollout": round(rollout, 4),
                "seconds_learn": round(timer.get("step_seconds", 0.0) - rollout, 4),
            }
            timer["history"].append(record)
            rl_common.append_jsonl(out / "metrics.jsonl" if out else None, record)

    return Track()


def _time_generation(trainer, timer: dict) -> None:
    """Accumulate the seconds spent in the trainer's generation call (rollout time)."""
    inner = getattr(trainer, "_generate", None)
    if inner is None:
        return

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            timer["generate"] = timer.get("generate", 0.0) + time.perf_counter() - t0

    trainer._generate = timed


def train_grpo(
    model,
    tokenizer,
    rows: Sequence[dict],
    reward_fn: Callable,
    params: dict,
    out_dir: str | Path | None = None,
    on_checkpoint: Callable[[int, object], None] | None = None,
) -> dict:
    """Train `model` with GRPO/RLOO on `rows` (dicts with 'prompt' and the reward's columns),
    `reward_fn(completions, rows) -> (rewards, successes)`. Returns a summary dict."""
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import GRPOTrainer, RLOOTrainer

    p = {**DEFAULT_PARAMS, **params}
    out = Path(out_dir) if out_dir is not None else None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    n_rows = p["steps"] * prompts_per_step(p, world) * p["num_iterations"]
    reserved = ("completion", "completion_ids")  # names TRL keeps for itself
    rows = [{k: v for k, v in r.items() if k not in reserved} for r in rows]
    prompt_format = chat.prompt_format_of(p)  # chat: TRL renders the template (sftrl.chat)
    rows = [{**r, "prompt": chat.trl_prompt(r["prompt"], prompt_format)} for r in rows]
    dataset = Dataset.from_list(rl_common.take(rl_common.cycle_rows(rows, p["seed"]), n_rows))
    columns = [c for c in dataset.column_names if c != "prompt"]
    timer: dict = {"history": []}
    trainer_cls = GRPOTrainer if p["algorithm"] == "grpo" else RLOOTrainer
    with tempfile.TemporaryDirectory(prefix="sftrl-grpo-") as scratch:
        trainer = trainer_cls(
            model=model,
            reward_funcs=[make_reward_func(reward_fn, columns)],
            args=_config(p, scratch),
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[_callback(tokenizer, out, p, on_checkpoint, timer)],
        )
        trainer.remove_callback(PrinterCallback)  # metrics.jsonl holds every log line
        _time_generation(trainer, timer)
        trainer.train()
    if trainer.accelerator.is_main_process:
        rl_common.save_policy(trainer.model, tokenizer, out, None)
    return _summary(timer["history"], p)


def _summary(history: list[dict], p: dict) -> dict:
    return rl_common.run_summary(history, algorithm=p["algorithm"], reward_kind=p["reward"])


# ----------------------------------------------------------------------------- stage


def train_from_dirs(
    start_model: str | Path,
    data_dir: str | Path,
    params: dict,
    out_dir: Path | None,
    base_model: str | Path | None = None,
) -> dict:
    """Load the start checkpoint and the RL hands, attach the SFT-loss probe, train."""
    from sftrl.modeling import load_model, load_tokenizer, set_seed_everywhere

    p = {**DEFAULT_PARAMS, **params}
    set_seed_everywhere(p["seed"])
    tokenizer = load_tokenizer(start_model, padding_side="left")
    model = load_model(start_model, device="cpu")  # the trainer places it

    def reward_fn(texts, rows):
        return rl_common.score_batch(texts, rows, p["reward"], p["reward_mode"])

    on_checkpoint, probe = None, None
    if p["sft_loss_every"] > 0 and out_dir is not None:
        probe = rl_common.SftLossTracker(
            data_dir,
            out_dir,
            p["sft_loss_rows"],
            p["sft_loss_batch_size"],
            chat.prompt_format_of(p),
        )
        if base_model is not None:
            probe.reference(base_model, "base")
        probe.measure(model, tokenizer, "start", 0)

        def on_checkpoint(step, m):
            probe.measure(m, tokenizer, "policy", step)

    summary = train_grpo(
        model, tokenizer, rl_common.rl_rows(data_dir), reward_fn, p, out_dir, on_checkpoint
    )
    if probe is not None:
        summary["sft_loss"] = {
            r["model"] if r["model"] != "policy" else "final": r["loss"] for r in probe.history
        }
    return summary


def run(spec: dict) -> None:
    """Stage entry: inputs {"start_model": HF dir, "base_model": HF dir, "data": data dir}."""
    params = {**DEFAULT_PARAMS, **spec.get("params", {})}
    inputs = spec["inputs"]
    rl_common.with_artifact(
        spec,
        lambda out: train_from_dirs(
            inputs["start_model"], inputs["data"], params, out, inputs.get("base_model")
        ),
    )


def main(argv: Sequence[str] | None = None) -> None:
    rl_common.run_stage(run, argv, __doc__)


if __name__ == "__main__":
    main()
