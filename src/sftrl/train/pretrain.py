"""Pre-training of the tiny model on the rule-conditioned arithmetic corpus (nanoGPT style).

A plain torch loop: each step takes the next `batch_size` corpus lines (reshuffled every pass),
pads them to the longest line, and minimises next-token cross-entropy with AdamW under a
linear-warmup + cosine learning rate. Writes `model/` (HF dir with tokenizer) and
`train_log.jsonl` (one record per step). Resumable: in-job checkpoints hold weights, optimizer
and RNG state (`torch.save`, one process); the batch stream is replayed to its position.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sftrl.train import resume
from sftrl.train.common import Progress, append_jsonl, defaults, read_jsonl, stage_params

STATE_FILE = "state.pt"  # an in-job checkpoint: weights, optimizer, torch RNG, tokens so far


# The embedded default (recipe measured in docs: ~3.5 min on 2 uncontended cores).
@dataclass(frozen=True)
class PretrainParams:
    """The pre-training stage's parameters (config `pretrain`; the schema holds the same
    defaults)."""

    seed: int = 0
    steps: int = 1800
    batch_size: int = 32  # lines per step (more, smaller steps memorise better than 900 x 64)
    lr: float = 2e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    max_length: int = 160  # tokens per line (verbose lines are ~110)
    # sftrl.corpus.generate_corpus options over DEFAULT_CORPUS, plus n_lines, seed
    corpus: dict = field(default_factory=dict)
    # sftrl.modeling.build_tiny_model sizes (~1.1M parameters)
    model: dict = field(
        default_factory=lambda: {
            "hidden_size": 128,
            "num_layers": 4,
            "num_heads": 4,
            "intermediate_size": 512,
            "max_position_embeddings": 256,
        }
    )


DEFAULT_PARAMS: dict = defaults(PretrainParams)


def lr_at(
    step: int, *, lr: float, warmup_steps: int, total_steps: int, min_lr_ratio: float
) -> float:
    """Linear warmup to `lr`, then cosine decay to `lr * min_lr_ratio` at the last step."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return lr * (min_lr_ratio + (1.0 - min_lr_ratio) * cosine)


def encode_lines(tokenizer, lines: Sequence[str], max_length: int) -> list[list[int]]:
    """[BOS] line [EOS] per line (the tokenizer adds BOS), truncated to max_length."""
    ids = tokenizer(list(lines), add_special_tokens=True)["input_ids"]
    eos = tokenizer.eos_token_id
    return [(x + [eos])[:max_length] for x in ids]


def make_batch(seqs: Sequence[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest sequence; padding is masked out of attention and loss."""
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        input_ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    labels = input_ids.masked_fill(mask == 0, -100)
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def batches(lengths: Sequence[int], batch_size: int, steps: int, seed: int, pool_batches: int = 16):
    """Index lists for `steps` batches. Every pass over the corpus is a fresh seeded
    permutation; within pools of `pool_batches` batches lines are grouped by length, so a batch
    of short compact lines is not padded to the ~110 tokens of a verbose line (2-3x fewer
    tokens); the batches of a pool are then shuffled."""
    gen = torch.Generator().manual_seed(seed)
    queue: list[list[int]] = []
    made = 0
    while made < steps:
        if not queue:
            order = torch.randperm(len(lengths), generator=gen).tolist()
            pool = batch_size * pool_batches
            for start in range(0, len(order) - batch_size + 1, pool):
                chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
                group = [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
                group = [b for b in group if len(b) == batch_size]
                shuffled = torch.randperm(len(group), generator=gen).tolist()
                queue += [group[j] for j in shuffled]
            if not queue:
                raise ValueError(f"corpus of {len(lengths)} lines < batch size {batch_size}")
        yield queue.pop(0)
        made += 1


def make_optimizer(model, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """Decay matrices only (not norms): the usual GPT recipe."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8)


def pretrain(
    model,
    tokenizer,
    lines: Sequence[str],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    warmup_steps: int,
    seed: int,
    min_lr_ratio: float = 0.1,
    weight_decay: float = 0.1,
    grad_clip: float = 1.0,
    max_length: int = 160,
    log_path: str | Path | None = None,
    progress: bool = True,
    checkpointer: resume.Checkpointer | None = None,
) -> dict:
    """Train `model` in place on `lines`; returns {final_loss, seconds, tokens, ...}. With a
    `checkpointer`, in-job checkpoints are saved and a rerun resumes from the newest."""
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    seqs = encode_lines(tokenizer, lines, max_length)
    optimizer = make_optimizer(model, lr, weight_decay)
    model.train()
    stream = batches([len(x) for x in seqs], batch_size, steps, seed)
    done, saved = checkpointer.restore() if checkpointer is not None else (0, None)
    n_tokens, t0, cpu0 = 0, time.time(), time.process_time()
    losses: list[float] = []
    if saved is not None:
        state = torch.load(saved / STATE_FILE)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        n_tokens = state["tokens"]
        losses = [r["loss"] for r in read_jsonl(log_path)]
        resume.skip(stream, done)
    if checkpointer is not None:
        checkpointer.total = steps
    show = Progress("pretrain", steps) if progress else None
    for step, idx in enumerate(stream, start=done):
        step_lr = lr_at(
            step, lr=lr, warmup_steps=warmup_steps, total_steps=steps, min_lr_ratio=min_lr_ratio
        )
        for group in optimizer.param_groups:
            group["lr"] = step_lr
        batch = {
            k: v.to(device)
            for k, v in make_batch([seqs[i] for i in idx], tokenizer.pad_token_id).items()
        }
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        losses.append(loss.item())
        n_tokens += int(batch["attention_mask"].sum())
        record = {
            "step": step + 1,
            "loss": losses[-1],
            "lr": step_lr,
            "grad_norm": float(grad_norm),
            "seconds": round(time.time() - t0, 3),
        }
        append_jsonl(log_path, record)
        if show is not None:
            show(step + 1, loss=losses[-1], lr=step_lr)
        if checkpointer is not None and step + 1 < steps and checkpointer.due(step + 1):
            path = checkpointer.path(step + 1)
            path.mkdir(parents=True, exist_ok=True)
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
            state.update(rng=torch.get_rng_state(), tokens=n_tokens)
            torch.save(state, path / STATE_FILE)
            checkpointer.commit(step + 1)
            checkpointer.stop_if_requested()
    model.eval()
    seconds = time.time() - t0
    # CPU seconds of this process: on a shared machine closer to the uncontended wall time
    cpu_seconds = time.process_time() - cpu0
    tail = losses[-max(1, steps // 20) :]  # average of the last 5%: less noisy than one step
    return {
        "final_loss": sum(tail) / len(tail),
        "first_loss": losses[0] if losses else None,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu_seconds, 2),
        "threads": torch.get_num_threads(),
        "tokens": n_tokens,
        "tokens_per_second": round(n_tokens / max(seconds, 1e-9), 1),
    }


# ----------------------------------------------------------------------------- stage


def unseen_multisets(data_dir: str | Path) -> set[str]:
    """Held-out ID multisets of the data artifact: every key the eval_id_unseen split holds,
    plus the manifest's full `unseen_multisets` list when present (a superset)."""
    import pandas as pd

    data_dir = Path(data_dir)
    keys = set(
        pd.read_parquet(data_dir / "eval_id_unseen.parquet", columns=["multiset"])["multiset"]
    )
    manifest = data_dir / "manifest.json"
    if manifest.exists():
        summary = json.loads(manifest.read_text()).get("summary", {})
        keys.update(summary.get("unseen_multisets", []))
    return keys


def data_texts(data_dir: str | Path) -> list[str]:
    """Every prompt/completion of the data artifact: the tokenizer must cover them all."""
    import pandas as pd

    texts: list[str] = []
    for path in sorted(Path(data_dir).glob("*.parquet")):
        frame = pd.read_parquet(path)
        for column in ("prompt", "completion"):
            if column in frame:
                texts.extend(frame[column].astype(str))
    return texts


FEEDBACK_MARK = "You failed this trial because"  # sftrl.game.render_feedback


def check_line_lengths(tokenizer, lines: Sequence[str], max_length: int, positions) -> None:
    """Multi-try transcripts (pretrain.corpus.feedback_fraction) are the longest lines: cutting
    one would drop its right answer, so they must fit pretrain.max_length (and the model's
    positions). Other lines keep the silent cut at max_length."""
    transcripts = [line for line in lines if FEEDBACK_MARK in line]
    if not transcripts:
        return
    longest = max(len(x) for x in encode_lines(tokenizer, transcripts, 10**9))
    for key, limit in (
        ("pretrain.max_length", max_length),
        ("model.tiny.max_position_embeddings", positions),
    ):
        if limit is not None and longest > limit:
            raise ValueError(
                f"pretrain.corpus.feedback_fraction: a multi-try transcript has {longest} "
                f"tokens > {key} = {limit}; raise {key} or lower "
                "pretrain.corpus.feedback_max_wrong"
            )


def train_base_model(
    params: dict,
    out_dir: str | Path,
    *,
    exclude_id_multisets: set[str],
    extra_texts: Sequence[str] = (),
    progress: bool = True,
    checkpointer: resume.Checkpointer | None = None,
) -> dict:
    """Corpus -> tokenizer -> tiny model -> pre-training -> `out_dir/model/`, train_log.jsonl."""
    from sftrl.corpus import generate_corpus
    from sftrl.modeling import build_tiny_model, build_tokenizer, count_parameters, save_model

    p = stage_params(PretrainParams, params)
    sizes = {**DEFAULT_PARAMS["model"], **p.model}  # a partial `model` keeps the other sizes
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    corpus_options = dict(p.corpus)
    n_lines = corpus_options.pop("n_lines", None) or p.steps * p.batch_size
    lines = generate_corpus(
        n_lines,
        corpus_options.pop("seed", p.seed),
        exclude_id_multisets=exclude_id_multisets,
        **corpus_options,
    )
    corpus_seconds = time.time() - t0
    tokenizer = build_tokenizer(
        [*lines, *extra_texts], number_tokens=sizes.get("number_tokens", "word")
    )
    check_line_lengths(tokenizer, lines, p.max_length, sizes.get("max_position_embeddings"))
    model = build_tiny_model(tokenizer, seed=p.seed, **sizes)
    stats = pretrain(
        model,
        tokenizer,
        lines,
        steps=p.steps,
        batch_size=p.batch_size,
        lr=p.lr,
        warmup_steps=p.warmup_steps,
        seed=p.seed,
        min_lr_ratio=p.min_lr_ratio,
        weight_decay=p.weight_decay,
        grad_clip=p.grad_clip,
        max_length=p.max_length,
        log_path=out / "train_log.jsonl",
        progress=progress,
        checkpointer=checkpointer,
    )
    save_model(model, tokenizer, out / "model")
    return {
        **stats,
        "corpus_lines": len(lines),
        "corpus_seconds": round(corpus_seconds, 2),
        "parameters": count_parameters(model),
        "vocab_size": len(tokenizer),
    }


def run(spec: dict) -> None:
    """Stage entry: inputs {"data": results/data/<id>}; writes model/ and train_log.jsonl."""
    from sftrl.train.common import with_artifact, world_size

    if world_size() > 1:  # a ~1M-parameter model: one process, no engine
        raise ValueError(
            f"resources.pretrain.gpu: pre-training runs on one process, not {world_size()}"
        )
    data_dir = spec["inputs"]["data"]
    excluded = unseen_multisets(data_dir)

    def body(out: Path) -> dict:
        summary = train_base_model(
            spec["params"],
            out,
            exclude_id_multisets=excluded,
            extra_texts=data_texts(data_dir),
            checkpointer=resume.checkpointer(spec, out),
        )
        return {**summary, "excluded_multisets": len(excluded)}

    with_artifact(spec, body, resumable=True)
