"""Greedy evaluation with `generation.backend` hf vs vllm on one checkpoint: same answers?
and tokens/s side by side. vLLM needs CUDA; without it only the hf row is measured and the
vllm row says why it did not run (nothing here has run on a GPU yet).

    python benchmarks/bench_generation.py --model DIR --data DATA_DIR \
        [--prompt-format chat] [--limit 234] [--max-new-tokens 256] [--dtype bfloat16] \
        [--out benchmarks/results/generation.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def measure(backend: str, args) -> tuple[dict, list[str] | None]:
    from sftrl.evaluate import evaluate_model

    t0 = time.perf_counter()
    summary, predictions = evaluate_model(
        args.model,
        args.data,
        splits=args.splits,
        decoding={"temperature": 0.0, "n": 1, "max_new_tokens": args.max_new_tokens, "seed": 0},
        batch_size=args.batch_size,
        limit=args.limit,
        dtype=args.dtype,
        progress=False,
        prompt_format=args.prompt_format,
        backend=backend,
    )
    seconds = time.perf_counter() - t0  # includes loading the model / starting the engine
    tokens = sum(summary["generated_tokens"].values())
    row = {
        "backend": backend,
        "seconds": round(seconds, 2),
        "generated_tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1),
        "success": {s: m["success"]["rate"] for s, m in summary["splits"].items()},
    }
    return row, predictions["completion"].tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--splits", nargs="+", default=["id_seen", "id_unseen", "ood"])
    parser.add_argument("--prompt-format", default="raw", choices=["raw", "chat"])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--out", default="benchmarks/results/generation.json")
    args = parser.parse_args()

    from sftrl.vllm_generation import require_cuda

    hf_row, hf_answers = measure("hf", args)
    rows = [hf_row]
    try:
        require_cuda()
    except RuntimeError as why:
        rows.append({"backend": "vllm", "not_run": str(why)})
    else:
        vllm_row, vllm_answers = measure("vllm", args)
        same = sum(a == b for a, b in zip(hf_answers, vllm_answers, strict=True))
        vllm_row["same_answers_as_hf"] = f"{same}/{len(hf_answers)}"
        rows.append(vllm_row)
    result = {"model": str(args.model), "prompt_format": args.prompt_format, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
