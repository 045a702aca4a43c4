"""SFT throughput of the embedded-default tiny model: tokens/s and MFU.

MFU = achieved training FLOP/s / this machine's measured fp32 GEMM peak (a large torch.matmul
with the same thread count). Training FLOPs per token follow the usual estimate
6 * (matmul parameters) + 12 * layers * hidden * context (attention scores and mixing),
counted over every non-padding token the model processes (prompt tokens included: they run
forward and backward even though only the completion is in the loss).

    python benchmarks/bench_sft.py [--hands 512] [--threads 2] [--out benchmarks/results/sft.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

import torch


def gemm_peak_gflops(size: int = 2048, repeats: int = 10) -> float:
    """Best-of fp32 matmul throughput (GFLOP/s) at the current torch thread count."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up (allocations, thread pool)
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * size**3 / (time.perf_counter() - t0) / 1e9)
    return best


def make_rows(n: int, seed: int) -> list[dict]:
    from sftrl.game import RULES, card_values, render_completion, render_prompt, sample_hand, solve

    rng, rule = random.Random(seed), RULES["id"]
    rows = []
    for _ in range(n):
        cards = sample_hand(rng, rule)
        formula = solve(card_values(cards, rule), rule.target)
        rows.append(
            {
                "prompt": render_prompt(cards, rule),
                "completion": render_completion(cards, rule, formula),
            }
        )
    return rows


def flops_per_token(model, context: float) -> float:
    """6 * matmul params (the embedding lookup is not a matmul) + attention term."""
    cfg = model.config
    matmul_params = sum(
        p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in n
    )
    return 6 * matmul_params + 12 * cfg.num_hidden_layers * cfg.hidden_size * context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hands", type=int, default=512, help="SFT examples (one epoch)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch-size", type=int, default=None, help="default: SFT default")
    parser.add_argument("--out", default="benchmarks/results/sft.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from sftrl.modeling import build_tiny_model, build_tokenizer, count_parameters, save_model
    from sftrl.train.pretrain import DEFAULT_PARAMS as PRETRAIN
    from sftrl.train.sft import DEFAULT_PARAMS as SFT
    from sftrl.train.sft import encode_row, train_sft

    load_before = os.getloadavg()[0]  # a shared machine: record how busy it was
    peak = gemm_peak_gflops()
    rows = make_rows(args.hands, seed=0)
    tokenizer = build_tokenizer([r[k] for r in rows for k in ("prompt", "completion")])
    sizes = PRETRAIN["model"]
    model = build_tiny_model(tokenizer, seed=0, **sizes)
    params = {**SFT, "epochs": [1]}
    if args.batch_size:
        params["batch_size"] = args.batch_size
    lengths = [len(encode_row(tokenizer, r["prompt"], r["completion"])[0]) for r in rows]
    with tempfile.TemporaryDirectory() as tmp:
        base = save_model(model, tokenizer, Path(tmp) / "base")
        t0 = time.perf_counter()
        summary = train_sft(base, rows, Path(tmp) / "sft", params=params)
        wall = time.perf_counter() - t0
    tokens = sum(lengths)  # one epoch: every row once
    seconds = summary["seconds"]  # trainer.train() only (includes the one final save)
    fpt = flops_per_token(model, context=sum(n * n for n in lengths) / tokens / 2)
    achieved = tokens * fpt / seconds / 1e9
    result = {
        "benchmark": "sft",
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "threads": args.threads,
            "torch": torch.__version__,
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        },
        "model": {**sizes, "parameters": count_parameters(model), "vocab_size": len(tokenizer)},
        "sft": {
            "hands": args.hands,
            "batch_size": params["batch_size"],
            "steps": summary["steps"],
            "mean_tokens_per_example": tokens / len(rows),
        },
        "tokens": tokens,
        "train_seconds": round(seconds, 3),
        "train_cpu_seconds": summary["cpu_seconds"],
        "wall_seconds_with_setup": round(wall, 3),
        "tokens_per_second": round(tokens / seconds, 1),
        "examples_per_second": round(len(rows) / seconds, 2),
        "flops_per_token": fpt,
        "achieved_gflops": round(achieved, 2),
        "peak_gflops_fp32_gemm": round(peak, 2),
        "mfu": round(achieved / peak, 4),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
