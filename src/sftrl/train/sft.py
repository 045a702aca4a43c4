"""Supervised fine-tuning with TRL's SFTTrainer on prompt/completion rows.

One run trains to the largest configured epoch and saves a complete HF model directory
`epoch-<e>/` whenever it passes a configured epoch (fractions allowed: 0.25 epoch = a quarter of
an epoch's optimizer steps). The loss is on completion tokens only (TRL's default for
prompt/completion data). Per-step train loss goes to `train_log.jsonl`; the completion-token
loss on held-out rows at every saved epoch to `heldout_loss.jsonl`.

Engine, precision and determinism come from `params["distributed"]` (`sftrl.train.engine`);
stage entry: `python -m sftrl.jobs --spec ...` (plain python or `accelerate launch`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sftrl.train import engine, resume
from sftrl.train.common import (
    Progress,
    append_jsonl,
    defaults,
    read_rows,
    stage_params,
    with_artifact,
    world_size,
)


@dataclass(frozen=True)
class SFTParams:
    """The SFT stage's parameters (config `sft`; the schema holds the same defaults). The
    weights' dtype is `model.dtype` (fp32 masters under bf16 mixed precision)."""

    epochs: list = field(default_factory=lambda: [0.5, 1, 2, 4])  # save points; runs to the last
    lr: float = 3e-4  # tiny model: OOD peaks ~epoch 0.5 then falls by epoch 4 (1e-4: flatter)
    lr_scheduler: str = "constant_with_warmup"  # paper: "cosine" with warmup_steps 0.03
    warmup_steps: int | float = 20  # int = steps, float in [0, 1) = fraction of all steps
    batch_size: int = 32  # per device
    grad_accum: int = 1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    data_seed: int = 0
    max_length: int = 256  # tokens; our prompts+answers are ~120
    max_train_rows: int | None = None  # use the first N rows of sft_train (None: all)
    heldout_batch_size: int = 64
    lora: dict | None = None  # e.g. {"r": 8, "alpha": 16}; analysed runs use full FT
    prompt_format: str = "raw"  # config model.prompt_format (sftrl.chat)


DEFAULT_PARAMS: dict = defaults(SFTParams)


def epoch_tag(epoch: float) -> str:
    """Directory name for a save point: 0.5 -> 'epoch-0.5', 2.0 -> 'epoch-2'."""
    return f"epoch-{float(epoch):g}"


def steps_per_epoch(n_rows: int, batch_size: int, grad_accum: int = 1, world_size: int = 1) -> int:
    return max(1, math.ceil(n_rows / (batch_size * grad_accum * world_size)))


def save_steps_for_epochs(epochs: Iterable[float], n_steps_per_epoch: int) -> dict[int, float]:
    """Map each configured epoch to the optimizer step that ends it (fractions rounded)."""
    steps: dict[int, float] = {}
    for e in sorted(set(float(x) for x in epochs)):
        step = round(e * n_steps_per_epoch)
        if e > 0 and step == 0:
            step = 1  # a tiny fraction still means "after some training"
        steps.setdefault(step, e)
    return steps


def save_points(
    epochs: Iterable[float], steps: Iterable[int], n_steps_per_epoch: int
) -> dict[int, tuple[str, float]]:
    """{global step: (directory name, epoch)} for epoch save points (`epoch-<e>`) and step
    save points (`step-<k>`); an epoch point wins when both fall on the same step."""
    points = {int(k): (f"step-{int(k)}", int(k) / n_steps_per_epoch) for k in steps}
    for step, epoch in save_steps_for_epochs(epochs, n_steps_per_epoch).items():
        points[step] = (epoch_tag(epoch), epoch)
    return dict(sorted(points.items()))


# ----------------------------------------------------------------------------- SFT loss


def encode_row(tokenizer, prompt: str, completion: str, prompt_format: str = "raw"):
    """Token ids of prompt+completion+end of answer and the prompt length, exactly as TRL builds
    them (rendering: sftrl.chat)."""
    from sftrl import chat  # prompt rendering (models, #11)

    return chat.encode_prompt_completion(tokenizer, prompt, completion, prompt_format)


@torch.no_grad()
def completion_token_nll(
    model, tokenizer, rows: Sequence[dict], *, batch_size: int = 64, prompt_format: str = "raw"
) -> list[tuple[list[int], list[float]]]:
    """Per row ('prompt', 'completion'): (answer token ids, NLL of each) under teacher forcing,
    EOS included, on the ids SFT trains on (`encode_row`)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [encode_row(tokenizer, r["prompt"], r["completion"], prompt_format) for r in rows]
    out = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, (ids, _) in enumerate(chunk):  # right padding: positions stay 0..n-1
            input_ids[i, : len(ids)] = torch.tensor(ids)
            mask[i, : len(ids)] = 1
        logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
        # token t is predicted at position t - 1 (no [batch, length, vocab] copy is made)
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().transpose(1, 2), input_ids[:, 1:].to(device), reduction="none"
        ).cpu()
        for i, (ids, n_prompt) in enumerate(chunk):
            out.append((ids[n_prompt:], nll[i, n_prompt - 1 : len(ids) - 1].tolist()))
    model.train(was_training)
    return out


def sft_loss(
    model, tokenizer, rows: Sequence[dict], batch_size: int = 64, prompt_format: str = "raw"
) -> float:
    """Mean cross-entropy per completion token (EOS included) over `rows` (dicts with
    'prompt' and 'completion'): the quantity SFT minimises, so RL stages can track it."""
    values = [
        value
        for _, nll in completion_token_nll(
            model, tokenizer, rows, batch_size=batch_size, prompt_format=prompt_format
        )
        for value in nll
    ]
    return sum(values) / max(len(values), 1)


# ----------------------------------------------------------------------------- callbacks


def _make_callback(
    tokenizer,
    out_dir: Path | None,
    points: dict[int, tuple[str, float]],
    heldout_rows: Sequence[dict],
    heldout_batch_size: int,
    eval_fn: Callable | None,
    dist: engine.Distributed,
    prompt_format: str = "raw",
):
    from transformers import TrainerCallback

    class SaveAtPoints(TrainerCallback):
        """Saves `epoch-<e>/` (or `step-<k>/`) at the mapped global steps and logs losses.
        Runs on every process (a ZeRO-3 gather or forward is collective); the main one
        (out_dir not None) writes. `trainer` is set once the trainer exists."""

        def __init__(self):
            self.t0 = time.time()
            self.trainer = None
            self.progress = Progress("sft", max(points))

        def _checkpoint(self, state, model, step: int):
            tag, epoch = points[step]
            engine.save_checkpoint(
                self.trainer.accelerator,
                self.trainer.model_wrapped,
                tokenizer,
                out_dir / tag if out_dir is not None else None,
                dist,
            )
            record = {
                "checkpoint": tag,
                "epoch": epoch,
                "step": step,
                "seconds": round(time.time() - self.t0, 3),
            }
            if heldout_rows:
                record["heldout_loss"] = sft_loss(
                    model, tokenizer, heldout_rows, heldout_batch_size, prompt_format
                )
            append_jsonl(out_dir / "heldout_loss.jsonl" if out_dir else None, record)
            if eval_fn is not None:
                eval_fn(model=model, tokenizer=tokenizer, epoch=epoch, step=step, checkpoint=tag)

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.t0 = time.time()
            if 0 in points and state.global_step == 0:  # not again when resumed
                self._checkpoint(state, model, 0)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step in points:
                self._checkpoint(state, model, state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or out_dir is None or not logs:
                return
            if "loss" in logs:  # per-step training logs (not the final summary)
                self.progress(state.global_step, loss=logs["loss"], lr=logs.get("learning_rate"))
                append_jsonl(
                    out_dir / "train_log.jsonl",
                    {
                        "step": state.global_step,
                        "epoch": state.epoch,
                        "loss": logs["loss"],
                        "lr": logs.get("learning_rate"),
                        "grad_norm": logs.get("grad_norm"),
                        "seconds": round(time.time() - self.t0, 3),
                    },
                )

    return SaveAtPoints()


# ----------------------------------------------------------------------------- training


def train_sft(
    model_dir: str | Path,
    train_rows: Sequence[dict],
    out_dir: str | Path | None,
    *,
    params: dict | SFTParams | None = None,
    save_at_epochs: Iterable[float] | None = None,
    save_at_steps: Iterable[int] = (),
    heldout_rows: Sequence[dict] = (),
    callbacks: Sequence = (),
    eval_fn: Callable | None = None,
    model=None,
    tokenizer=None,
    checkpointer: resume.Checkpointer | None = None,
) -> dict:
    """Fine-tune the HF causal LM in `model_dir` on prompt/completion rows.

    Saves `out_dir/epoch-<e>/` for every e in `save_at_epochs` (default: params["epochs"]) and
    `out_dir/step-<k>/` for every k in `save_at_steps`, training to the last of them.
    `eval_fn(model=, tokenizer=, epoch=, step=, checkpoint=)` is called at each save point
    (the RL->SFT branch tracks reward there). Pass `model`/`tokenizer` to continue
    from objects already in memory. `out_dir=None` writes nothing (non-main processes). With a
    `checkpointer`, in-job checkpoints are saved and a rerun resumes from the newest.
    Returns a summary dict (steps, seconds, final train loss, held-out losses).
    """
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from sftrl.modeling import load_model, load_tokenizer

    raw = params if isinstance(params, dict) else {}
    p, dist = stage_params(SFTParams, params), engine.distributed(raw)
    epochs = list(save_at_epochs if save_at_epochs is not None else p.epochs)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    if p.max_train_rows:
        train_rows = list(train_rows)[: p.max_train_rows]

    if tokenizer is None:
        tokenizer = load_tokenizer(model_dir, padding_side="right")
    if model is None:
        dtype = engine.master_dtype(dist, engine.model_dtype(raw))
        model = load_model(model_dir, dtype=dtype, device="cpu")  # the Trainer moves it
    model.train()
    if p.lora:
        from peft import get_peft_model

        from sftrl.modeling import lora_config

        model = get_peft_model(model, lora_config(**p.lora))

    world = world_size()
    per_epoch = steps_per_epoch(len(train_rows), p.batch_size, p.grad_accum, world)
    points = save_points(epochs, save_at_steps, per_epoch)
    if not points or max(points) == 0:
        raise ValueError("no save point after step 0: give save_at_epochs or save_at_steps")
    max_steps = max(points)

    from sftrl import chat  # prompt rendering (models, #11): strings (raw) or conversations

    pairs = [
        chat.trl_prompt_completion(r["prompt"], r["completion"], p.prompt_format)
        for r in train_rows
    ]
    dataset = Dataset.from_dict(
        {"prompt": [a for a, _ in pairs], "completion": [b for _, b in pairs]}
    )
    if checkpointer is not None:
        checkpointer.total = max_steps
    config = SFTConfig(
        # the Trainer's own checkpoints: in-job resume state (sftrl.train.resume) or scratch
        **resume.trainer_arguments(
            checkpointer, str(out / "_trainer") if out is not None else "/tmp/sftrl-sft-scratch"
        ),
        max_steps=max_steps,
        per_device_train_batch_size=p.batch_size,
        gradient_accumulation_steps=p.grad_accum,
        learning_rate=p.lr,
        lr_scheduler_type=p.lr_scheduler,
        warmup_steps=p.warmup_steps,
        weight_decay=p.weight_decay,
        max_grad_norm=p.max_grad_norm,
        seed=p.seed,
        data_seed=p.data_seed,
        # bf16, activation checkpointing (TRL's default is on), determinism, DeepSpeed
        **engine.trainer_arguments(dist),
        max_length=p.max_length,
        completion_only_loss=True,
        packing=False,
        logging_steps=1,
        report_to=[],  # curves: our JSONL logs, each also a TensorBoard scalar (train.common)
        disable_tqdm=True,  # progress lines instead, readable in a SLURM log
        dataloader_num_workers=0,
        dataset_num_proc=None,
    )
    callback = _make_callback(
        tokenizer, out, points, heldout_rows, p.heldout_batch_size, eval_fn, dist, p.prompt_format
    )
    resume_callbacks = [resume.trainer_callback(checkpointer)] if checkpointer else []
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[callback, *callbacks, *resume_callbacks],
    )
    trainer.remove_callback(PrinterCallback)  # the logs go to train_log.jsonl
    callback.trainer = trainer
    # full_determinism turns on torch's deterministic mode, which also fills every new tensor
    # with NaN (a debugging aid against reads of uninitialised memory). On CPU that fill
    # doubles the step time; switching it off leaves the weights bit-identical (checked).
    torch.utils.deterministic.fill_uninitialized_memory = False
    t0, cpu0 = time.time(), time.process_time()
    start = resume.latest_trainer_checkpoint(checkpointer)
    trainer.train(resume_from_checkpoint=start)
    resume.finish_trainer(checkpointer)
    seconds, cpu_seconds = time.time() - t0, time.process_time() - cpu0
    if out is not None:
        _remove_tree(out / "_trainer")  # Trainer scratch (training_args.bin differs per run)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]  # resumed: all steps
    return {
        "steps": max_steps,
        "steps_per_epoch": per_epoch,
        "train_rows": len(train_rows),
        "saved": [tag for tag, _ in points.values()],
        "final_train_loss": losses[-1] if losses else None,
        "mean_train_loss": sum(losses) / len(losses) if losses else None,
        "resumed_from": start and Path(start).name,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu_seconds, 2),  # closer to uncontended time on a shared box
        "threads": torch.get_num_threads(),
        **engine.manifest_fields(dist),
    }


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------- stage


def run(spec: dict) -> None:
    """Stage entry: inputs {"data": results/data/<id>, "base_model": <HF dir>}."""
    data = Path(spec["inputs"]["data"])
    columns = ["prompt", "completion"]
    train_rows = read_rows(data / "sft_train.parquet", columns)
    heldout_path = data / "sft_heldout.parquet"
    heldout_rows = read_rows(heldout_path, columns) if heldout_path.exists() else []
    base = spec["inputs"]["base_model"]
    with_artifact(
        spec,
        lambda out: train_sft(
            base,
            train_rows,
            out,
            params=spec["params"],
            heldout_rows=heldout_rows,
            checkpointer=resume.checkpointer(spec, out),
        ),
        resumable=True,
    )
