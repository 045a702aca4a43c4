"""GRPO (or RLOO) through TRL's GRPOTrainer / RLOOTrainer with the GeneralPoints reward.

Each step answers `per_device_train_batch_size / num_generations` hands `num_generations`
times; the reward function calls `sftrl.game.score` on every completion (dataset columns
`cards`, `rule`) and logs the success rate. Hands come from `rl_prompts.parquet`, cycled in a
seeded order (the trainer's own shuffling is off). No KL term by default (beta 0). Writes
`metrics.jsonl` (TRL's per-step logs + rollout/learning seconds), `step-<k>/`, `final/`, and the
SFT-loss probe `sft_loss.jsonl` (arXiv 2601.07389).

Engine, precision and determinism come from `params["distributed"]` (`sftrl.train.engine`);
stage entry: `python -m sftrl.jobs --spec ...` (plain python or `accelerate launch`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sftrl import chat
from sftrl.train import engine, resume, rl_common
from sftrl.train.common import (
    Progress,
    append_jsonl,
    defaults,
    read_jsonl,
    stage_params,
    world_size,
)


@dataclass(frozen=True)
class GRPOParams:
    """The GRPO/RLOO stage's parameters (config `rl.grpo`; the schema holds the same defaults)."""

    algorithm: str = "grpo"  # "grpo" | "rloo" (same interface in TRL)
    steps: int = 100  # optimizer steps
    num_generations: int = 8  # answers per hand (the group)
    per_device_train_batch_size: int = 64  # completions per step per device
    grad_accum: int = 1
    lr: float = 2e-5  # 1e-4 wrecked greedy ID success at tiny scale
    lr_schedule: str = "constant"  # any transformers scheduler name
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    beta: float = 0.0  # KL coefficient (0: no reference model)
    clip: float = 0.2  # epsilon of the clipped ratio
    num_iterations: int = 1  # optimisation passes per generation batch
    loss_type: str = "dapo"  # GRPO only (TRL default)
    scale_rewards: str = "group"  # GRPO only: "group" | "batch" | "none"
    temperature: float = 0.5  # 1.0 hurt greedy ID at tiny scale; PPO uses 0.2
    max_completion_length: int = 56  # SFT answers are ~41 tokens with EOS
    reward: str = "published"  # "published" | "success"
    reward_mode: str = "strict"  # config reward.mode: "strict" | "published"
    prompt_format: str = "raw"  # config model.prompt_format (sftrl.chat)
    backend: str = "hf"  # config generation.backend: "hf" | "vllm"
    save_every: int = 25
    sft_loss_every: int = 25
    sft_loss_rows: int = 256
    sft_loss_batch_size: int = 64
    seed: int = 0


DEFAULT_PARAMS: dict = defaults(GRPOParams)


def prompts_per_step(params, world_size: int = 1) -> int:
    p = stage_params(GRPOParams, params)
    completions = p.per_device_train_batch_size * p.grad_accum * world_size
    if completions % p.num_generations:
        raise ValueError(
            "per_device_train_batch_size * grad_accum * world size must be a "
            "multiple of num_generations"
        )
    return completions // p.num_generations


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


def _config(p: GRPOParams, scratch: str, dist: engine.Distributed, ckpt):
    from trl import GRPOConfig, RLOOConfig

    from sftrl.vllm_generation import grpo_vllm_args

    common = dict(
        **resume.trainer_arguments(ckpt, scratch),  # in-job checkpoints (sftrl.train.resume)
        max_steps=p.steps,
        per_device_train_batch_size=p.per_device_train_batch_size,
        gradient_accumulation_steps=p.grad_accum,
        num_generations=p.num_generations,
        learning_rate=p.lr,
        lr_scheduler_type=p.lr_schedule,
        warmup_steps=p.warmup_ratio,
        weight_decay=p.weight_decay,
        max_grad_norm=p.max_grad_norm,
        beta=p.beta,
        epsilon=p.clip,
        num_iterations=p.num_iterations,
        temperature=p.temperature,
        top_k=0,
        top_p=1.0,
        max_completion_length=p.max_completion_length,
        seed=p.seed,
        data_seed=p.seed,
        shuffle_dataset=False,
        # bf16, activation checkpointing (TRL's default is on), determinism, DeepSpeed
        **engine.trainer_arguments(dist),
        logging_steps=1,
        report_to=[],  # curves: metrics.jsonl, each line also a TensorBoard scalar
        disable_tqdm=True,
        **grpo_vllm_args(p.backend),  # generation backend (models, #11)
    )
    if p.algorithm == "grpo":
        return GRPOConfig(loss_type=p.loss_type, scale_rewards=p.scale_rewards, **common)
    if p.algorithm == "rloo":
        return RLOOConfig(**common)
    raise ValueError(f"algorithm must be 'grpo' or 'rloo', got {p['algorithm']!r}")


def _callback(tokenizer, out: Path | None, p: GRPOParams, on_checkpoint, timer: dict, dist):
    from transformers import TrainerCallback

    class Track(TrainerCallback):
        """Logs to metrics.jsonl (main process); saves step-<k>/ and runs the SFT-loss probe on
        every process (collective under ZeRO-3). `trainer` is set once the trainer exists."""

        trainer = None
        progress = Progress(p.algorithm, p.steps)

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if on_checkpoint is not None and p.sft_loss_every > 0 and state.global_step == 0:
                on_checkpoint(0, model)  # the start model, once the engine holds it

        def on_step_begin(self, args, state, control, **kwargs):
            timer["step_start"], timer["generate"] = time.perf_counter(), 0.0

        def on_step_end(self, args, state, control, model=None, **kwargs):
            timer["step_seconds"] = time.perf_counter() - timer["step_start"]
            step, last = state.global_step, state.max_steps
            if rl_common.is_due(step, p.save_every, last) and step != last:
                self._save(step)
            if (
                on_checkpoint is not None
                and p.sft_loss_every > 0
                and rl_common.is_due(step, p.sft_loss_every, last)
            ):
                on_checkpoint(step, model)

        def _save(self, step: int | None) -> None:
            trainer = self.trainer
            rl_common.save_policy(
                trainer.accelerator, trainer.model_wrapped, tokenizer, out, step, dist
            )

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return  # the end-of-training summary has no "loss"
            rollout = timer.get("generate", 0.0)
            record = {
                "step": state.global_step,
                "reward_kind": p.reward,
                "algorithm": p.algorithm,
                **logs,
                "seconds_rollout": round(rollout, 4),
                "seconds_learn": round(timer.get("step_seconds", 0.0) - rollout, 4),
            }
            timer["history"].append(record)
            append_jsonl(out / "metrics.jsonl" if out else None, record)
            self.progress(state.global_step, reward=logs.get("reward"), success=logs.get("success"))

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
    params,
    out_dir: str | Path | None = None,
    on_checkpoint: Callable[[int, object], None] | None = None,
    dist: engine.Distributed | None = None,
    checkpointer: resume.Checkpointer | None = None,
) -> dict:
    """Train `model` with GRPO/RLOO on `rows` (dicts with 'prompt' and the reward's columns),
    `reward_fn(completions, rows) -> (rewards, successes)`. Returns a summary dict.
    `on_checkpoint(step, policy)` runs at step 0 and every `sft_loss_every` steps, on every
    process (the SFT-loss probe). With a `checkpointer`, a rerun resumes (sftrl.train.resume)."""
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import GRPOTrainer, RLOOTrainer

    p = stage_params(GRPOParams, params)
    dist = dist or engine.Distributed()
    out = Path(out_dir) if out_dir is not None else None
    n_rows = p.steps * prompts_per_step(p, world_size()) * p.num_iterations
    reserved = ("completion", "completion_ids")  # names TRL keeps for itself
    rows = [{k: v for k, v in r.items() if k not in reserved} for r in rows]
    rows = [{**r, "prompt": chat.trl_prompt(r["prompt"], p.prompt_format)} for r in rows]
    dataset = Dataset.from_list(rl_common.take(rl_common.cycle_rows(rows, p.seed), n_rows))
    columns = [c for c in dataset.column_names if c != "prompt"]
    start = resume.latest_trainer_checkpoint(checkpointer)
    timer: dict = {"history": read_jsonl(out / "metrics.jsonl" if start and out else None)}
    trainer_cls = GRPOTrainer if p.algorithm == "grpo" else RLOOTrainer
    track = _callback(tokenizer, out, p, on_checkpoint, timer, dist)
    callbacks = [track]
    if checkpointer is not None:
        checkpointer.total = p.steps
        # a checkpoint only where a generation batch is used up: the resumed trainer generates
        callbacks.append(resume.trainer_callback(checkpointer, lambda s: s % p.num_iterations == 0))
    with tempfile.TemporaryDirectory(prefix="sftrl-grpo-") as scratch:
        trainer = trainer_cls(
            model=model,
            reward_funcs=[make_reward_func(reward_fn, columns)],
            args=_config(p, scratch, dist, checkpointer),
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=callbacks,
        )
        track.trainer = trainer
        trainer.remove_callback(PrinterCallback)  # metrics.jsonl holds every log line
        _time_generation(trainer, timer)
        trainer.train(resume_from_checkpoint=start)
        resume.finish_trainer(checkpointer)
        track._save(None)
    return _summary(timer["history"], p)


def _summary(history: list[dict], p: GRPOParams) -> dict:
    return rl_common.run_summary(history, algorithm=p.algorithm, reward_kind=p.reward)


# ----------------------------------------------------------------------------- stage


def train_from_dirs(
    start_model: str | Path,
    data_dir: str | Path,
    params: dict,
    out_dir: Path | None,
    base_model: str | Path | None = None,
    checkpointer: resume.Checkpointer | None = None,
) -> dict:
    """Load the start checkpoint and the RL hands, attach the SFT-loss probe, train."""
    from sftrl.modeling import load_model, load_tokenizer, set_seed_everywhere

    resumed = checkpointer is not None and checkpointer.restore()[0] > 0  # before any write
    p, dist = stage_params(GRPOParams, params), engine.distributed(params)
    set_seed_everywhere(p.seed)
    tokenizer = load_tokenizer(start_model, padding_side="left")
    dtype = engine.master_dtype(dist, engine.model_dtype(params))
    model = load_model(start_model, dtype=dtype, device="cpu")  # the trainer places it

    def reward_fn(texts, rows):
        return rl_common.score_batch(texts, rows, p.reward, p.reward_mode)

    probe, on_checkpoint = rl_common.sft_loss_probe(
        data_dir, out_dir, p, tokenizer, base_model, resumed
    )
    rows = rl_common.rl_rows(data_dir)
    summary = train_grpo(
        model, tokenizer, rows, reward_fn, p, out_dir, on_checkpoint, dist, checkpointer
    )
    return {**summary, **rl_common.probe_summary(probe), **engine.manifest_fields(dist)}


def run(spec: dict) -> None:
    rl_common.run_stage(spec, train_from_dirs)
