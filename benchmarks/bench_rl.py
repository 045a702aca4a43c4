"""Cost of one PPO step (our actor-critic) and one GRPO step (TRL) at the embedded-default size.

Model: the project's tiny Llama (hidden 192, 4 layers, 4 heads, MLP 512, word-level tokenizer
of ~250 tokens), randomly initialised, so answers rarely stop at EOS: every rollout generates
about `--new-tokens` tokens per answer (the worst case of a real run). Prompts: the real verbose
GeneralPoints prompt under the ID rule (~70 tokens). Both use 64 answers per step:
- PPO: 64 hands, 4 epochs x 4 minibatches of 16 = 16 optimizer steps per step (the paper's
  epochs), value head, KL-to-start measured;
- GRPO: 8 hands x 8 generations, 1 optimizer step per step (TRL defaults, beta 0).
Seconds are split into rollout (generation; PPO also scores) and learning (everything else).
The first step is a warm-up and is left out of the means.

    .venv/bin/python benchmarks/bench_rl.py --steps 4 --threads 2
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

from sftrl import set_offline_env

RESULTS = Path(__file__).resolve().parent / "results"


def make_rows(count: int, seed: int) -> list[dict]:
    """`count` ID-rule hands as the data stage writes them (prompt, completion, cards, rule)."""
    from sftrl import data
    from sftrl.game import RULES, sample_hand

    rule, rng = RULES["id"], random.Random(seed)
    return data.make_rows([sample_hand(rng, rule) for _ in range(count)], rule, True)


def per_step(metrics_path: Path) -> dict:
    lines = [json.loads(x) for x in metrics_path.read_text().splitlines()][1:]  # drop warm-up
    mean = {k: sum(r[k] for r in lines) / len(lines) for k in ("seconds_rollout", "seconds_learn")}
    mean["seconds_total"] = mean["seconds_rollout"] + mean["seconds_learn"]
    return {k: round(v, 3) for k, v in mean.items()} | {"measured_steps": len(lines)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=str(RESULTS / "rl.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    set_offline_env()

    from sftrl.modeling import build_tiny_model, build_tokenizer, count_parameters
    from sftrl.train import grpo, ppo, rl_common

    rows = make_rows(256, seed=0)
    tokenizer = build_tokenizer([r["prompt"] + " " + r["completion"] for r in rows])
    prompt_tokens = sum(len(tokenizer(r["prompt"])["input_ids"]) for r in rows) / len(rows)

    def reward_fn(texts, batch):
        return rl_common.score_batch(texts, batch, "published")

    result = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg(),
        },
        "model": {"hidden": 192, "layers": 4, "heads": 4, "mlp": 512, "vocab": len(tokenizer)},
        "prompt_tokens_mean": round(prompt_tokens, 1),
        "new_tokens": args.new_tokens,
    }
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(tokenizer)
        result["model"]["parameters"] = count_parameters(model)
        ppo_params = {
            "steps": args.steps,
            "rollout_batch_size": 64,
            "minibatch_size": 16,
            "micro_batch_size": 16,
            "ppo_epochs": 4,
            "temperature": 1.0,
            "max_new_tokens": args.new_tokens,
            "save_every": 0,
            "sft_loss_every": 0,
        }
        (Path(tmp) / "ppo_out").mkdir()
        t0 = time.perf_counter()
        ppo.train_ppo(
            model,
            tokenizer,
            rl_common.cycle_rows(rows, 0),
            reward_fn,
            ppo_params,
            Path(tmp) / "ppo_out",
        )
        result["ppo"] = {
            "params": ppo_params,
            "optimizer_steps_per_step": 16,
            **per_step(Path(tmp) / "ppo_out" / "metrics.jsonl"),
            "wall_seconds": round(time.perf_counter() - t0, 2),
        }

        model = build_tiny_model(tokenizer)
        grpo_params = {
            "steps": args.steps,
            "num_generations": 8,
            "per_device_train_batch_size": 64,
            "temperature": 1.0,
            "max_completion_length": args.new_tokens,
            "save_every": 0,
            "sft_loss_every": 0,
        }
        (Path(tmp) / "grpo_out").mkdir()
        t0 = time.perf_counter()
        grpo.train_grpo(model, tokenizer, rows, reward_fn, grpo_params, Path(tmp) / "grpo_out")
        result["grpo"] = {
            "params": grpo_params,
            "optimizer_steps_per_step": 1,
            **per_step(Path(tmp) / "grpo_out" / "metrics.jsonl"),
            "wall_seconds": round(time.perf_counter() - t0, 2),
        }
    result["machine"]["loadavg_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
