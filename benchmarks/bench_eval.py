"""Evaluation throughput: our batched KV-cache generation vs per-sample generation without cache.

Same prompts (the real verbose GeneralPoints prompt, ID and OOD hands), same tiny Llama of the
embedded-default size (hidden 192, 4 layers, 4 heads, MLP 512, the project's word-level
tokenizer), greedy decoding. The model is randomly initialised, so rows rarely stop at EOS:
every method generates about ``max_new_tokens`` per prompt, and throughput counts generated
tokens. Methods:

* ``ours``: ``sftrl.evaluate.generate_token_ids`` (sorted batches, left padding, KV cache);
* ``hf_batched_cache``: ``model.generate`` on left-padded batches with the cache (reference);
* ``per_sample_no_cache``: ``model.generate(use_cache=False)`` one prompt at a time (the naive
  baseline; run on the first ``--baseline-prompts`` prompts only, it is slow).

The script also checks that the three give the same tokens on the shared prompts.

    .venv/bin/python benchmarks/bench_eval.py --prompts 128 --baseline-prompts 32
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def make_prompts(count: int, seed: int) -> tuple[list[str], list[str]]:
    from sftrl import game
    from sftrl.game.rules import RULES, card_values, sample_hand

    rng = random.Random(seed)
    prompts, completions = [], []
    for i in range(count):
        rule = RULES["id" if i % 2 == 0 else "ood"]
        cards = list(sample_hand(rng, rule))
        prompts.append(game.render_prompt(cards, rule))
        formula = game.solve(list(card_values(cards, rule)), rule.target)
        completions.append(game.render_completion(cards, rule, formula))
    return prompts, completions


def hf_generate(model, tokenizer, prompts, *, max_new_tokens, batch_size, use_cache):
    """``model.generate`` over left-padded batches; returns the new token ids, EOS cut."""
    eos = tokenizer.eos_token_id
    out_ids = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, padding_side="left")
        with torch.inference_mode():
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                use_cache=use_cache,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=eos,
            )
        for row in out[:, enc["input_ids"].shape[1] :].tolist():
            cut = row.index(eos) if eos in row else len(row)
            out_ids.append(row[:cut])
    return out_ids


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--baseline-prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_eval.json")
    args = parser.parse_args()

    from sftrl.evaluate import generate_token_ids
    from sftrl.modeling import build_tiny_model, build_tokenizer, count_parameters

    torch.set_num_threads(args.threads)
    prompts, completions = make_prompts(args.prompts, args.seed)
    tokenizer = build_tokenizer(prompts + completions)
    model = build_tiny_model(
        tokenizer,
        hidden_size=192,
        num_layers=4,
        num_heads=4,
        intermediate_size=512,
        max_position_embeddings=512,
        seed=args.seed,
    ).eval()
    prompt_tokens = [len(ids) for ids in tokenizer(prompts)["input_ids"]]
    answer_tokens = [len(ids) - 1 for ids in tokenizer(completions)["input_ids"]]

    # warm-up (first calls allocate and pick kernels)
    generate_token_ids(model, tokenizer, prompts[:4], max_new_tokens=4, batch_size=4)

    def run_ours(subset):
        ids = generate_token_ids(
            model, tokenizer, subset, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size
        )
        return [per[0] for per in ids]

    results = {}
    ours, seconds = timed(lambda: run_ours(prompts))
    results["ours"] = {"prompts": len(prompts), "seconds": seconds, "tokens": sum(map(len, ours))}
    hf_cache, seconds = timed(
        lambda: hf_generate(
            model,
            tokenizer,
            prompts,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            use_cache=True,
        )
    )
    results["hf_batched_cache"] = {
        "prompts": len(prompts),
        "seconds": seconds,
        "tokens": sum(map(len, hf_cache)),
    }
    subset = prompts[: args.baseline_prompts]
    naive, seconds = timed(
        lambda: hf_generate(
            model,
            tokenizer,
            subset,
            max_new_tokens=args.max_new_tokens,
            batch_size=1,
            use_cache=False,
        )
    )
    results["per_sample_no_cache"] = {
        "prompts": len(subset),
        "seconds": seconds,
        "tokens": sum(map(len, naive)),
    }
    for r in results.values():
        r["tokens_per_s"] = r["tokens"] / r["seconds"]

    k = len(subset)
    report = {
        "benchmark": "bench_eval",
        "model": {
            "hidden": 192,
            "layers": 4,
            "heads": 4,
            "mlp": 512,
            "vocab": len(tokenizer),
            "parameters": count_parameters(model),
        },
        "prompt_tokens_mean": sum(prompt_tokens) / len(prompt_tokens),
        "answer_tokens_mean (solver answers, + EOS)": sum(answer_tokens) / len(answer_tokens) + 1,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "results": results,
        "speedup_vs_per_sample_no_cache": (
            results["ours"]["tokens_per_s"] / results["per_sample_no_cache"]["tokens_per_s"]
        ),
        "speedup_vs_hf_batched_cache": (
            results["ours"]["tokens_per_s"] / results["hf_batched_cache"]["tokens_per_s"]
        ),
        "same_tokens_as_hf_batched_cache": ours == hf_cache,
        "same_tokens_as_per_sample_no_cache (first prompts)": ours[:k] == naive,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
