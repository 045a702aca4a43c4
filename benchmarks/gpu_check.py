"""GPU check of the memory plan: measured peak memory and tokens/s next to sftrl.memory's estimate.

A randomly initialised Qwen2 with the real Qwen2.5-7B widths (hidden 3584, 28 heads, 4 KV
heads, MLP 18944, vocab 152064) and `--layers` decoder layers goes through one SFT step, one
PPO update (rollout with the KV cache, policy + value head forward/backward, clipped losses)
and one GRPO step (groups of answers, group-normalised advantages), on one device, under the
Qwen preset's `distributed` settings as one process runs them: bf16 weights and grads, fp32
master weights with AdamW (on the CPU when `offload_optimizer`), activation checkpointing.
ZeRO sharding over several GPUs is not exercised (one device), so the check measures what
sharding divides: the per-layer activation and state bytes the plan multiplies out.

    .venv/bin/python benchmarks/gpu_check.py --device cuda --layers 4   # scripts/gpu-check.sh
    .venv/bin/python benchmarks/gpu_check.py --device cpu --layers 1 --tiny-widths   # CI smoke

Writes JSON (default benchmarks/results/gpu_check.json). On CPU there is no peak-memory
counter: measured bytes are null and only the estimates and tokens/s are reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from sftrl import memory
from sftrl.config import DEFAULT_CONFIG, load_config
from sftrl.train import ppo

PRESET = DEFAULT_CONFIG.parent / "configs" / "paper-qwen2.5-7b.yaml"
RESULTS = Path(__file__).resolve().parent / "results"
QWEN = "Qwen/Qwen2.5-7B-Instruct"
TINY_WIDTHS = {  # same shape ratios as Qwen2.5-7B, ~1/28 of the width
    "hidden_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 672,
    "vocab_size": 512,
}


def build_model(layers: int, tiny: bool, device: torch.device, dtype: torch.dtype):
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs = {k: v for k, v in memory.KNOWN_ARCHITECTURES[QWEN].items() if k != "model_type"}
    if tiny:
        kwargs.update(TINY_WIDTHS)
    config = AutoConfig.for_model("qwen2", **{**kwargs, "num_hidden_layers": layers})
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model, config


class MasterAdamW:
    """fp32 master weights + AdamW for bf16 model weights (DeepSpeed's bf16 optimizer on one
    process); `offload` keeps masters and states on the CPU."""

    def __init__(self, params, lr: float, offload: bool):
        self.params = [p for p in params if p.requires_grad]
        where = "cpu" if offload else None
        self.masters = [p.detach().to(where or p.device, torch.float32) for p in self.params]
        for m in self.masters:
            m.requires_grad_(True)
        self.optimizer = torch.optim.AdamW(self.masters, lr=lr)

    def step(self) -> None:
        for p, m in zip(self.params, self.masters, strict=True):
            m.grad = None if p.grad is None else p.grad.to(m.device, torch.float32)
            p.grad = None
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for p, m in zip(self.params, self.masters, strict=True):
                p.copy_(m.to(p.device, p.dtype))


def peak(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def timed(device: torch.device, fn) -> tuple[float, object]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0, out


def sft_step(model, opt, batch: int, seq: int, device) -> int:
    ids = torch.randint(0, model.config.vocab_size, (batch, seq), device=device)
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    return batch * seq


def rollout(model, prompts: int, prompt_len: int, new: int, device):
    ids = torch.randint(0, model.config.vocab_size, (prompts, prompt_len), device=device)
    mask = torch.ones_like(ids)
    model.eval()  # HF turns the KV cache off while training with gradient checkpointing
    with torch.no_grad():
        tokens, completion_mask = ppo.sample(model, ids, mask, -1, 0, new, 1.0)
    model.train()
    full = torch.cat([ids, tokens], dim=1)
    return full, torch.cat([mask, completion_mask], dim=1), completion_mask


def ppo_update(model, head, opt, prompts, prompt_len, new, micro, device) -> int:
    full, attention, completion = rollout(model, prompts, prompt_len, new, device)
    rewards = torch.rand(prompts, device=device)
    for start in range(0, prompts, micro):
        rows = slice(start, start + micro)
        logp, _, values = ppo.token_stats(model, head, full[rows], attention[rows], prompt_len, 1.0)
        seq_logp = (logp * completion[rows]).sum(-1, keepdim=True)
        v0 = values[:, :1]
        adv = (rewards[rows, None] - v0).detach()
        one = torch.ones_like(seq_logp)
        pl, _ = ppo.policy_loss(seq_logp, seq_logp.detach(), adv, one, 0.1)
        vl, _ = ppo.value_loss(v0, v0.detach(), rewards[rows, None], one, 0.1)
        (pl + 0.5 * vl).backward()
    opt.step()
    return int(full.numel())


def grpo_step(model, opt, prompts, group, prompt_len, new, micro, device) -> int:
    full, attention, completion = rollout(model, prompts * group, prompt_len, new, device)
    rewards = torch.rand(prompts, group, device=device)
    adv = (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)
    adv = adv.reshape(-1, 1)
    for start in range(0, full.shape[0], micro):
        rows = slice(start, start + micro)
        logp, _, _ = ppo.token_stats(model, None, full[rows], attention[rows], prompt_len, 1.0)
        loss, _ = ppo.policy_loss(logp, logp.detach(), adv[rows], completion[rows], 0.2)
        loss.backward()
    opt.step()
    return int(full.numel())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--tiny-widths", action="store_true", help="CI smoke: narrow widths")
    parser.add_argument("--batch", type=int, default=4, help="SFT sequences per step")
    parser.add_argument("--seq", type=int, default=512, help="SFT tokens per sequence")
    parser.add_argument("--prompts", type=int, default=8, help="RL prompts per step")
    parser.add_argument("--prompt-len", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--group", type=int, default=4, help="GRPO answers per prompt")
    parser.add_argument("--micro", type=int, default=4, help="RL sequences per backward")
    parser.add_argument("--out", default=str(RESULTS / "gpu_check.json"))
    args = parser.parse_args(argv)

    dist = load_config(DEFAULT_CONFIG, PRESET)["distributed"]
    device = torch.device(args.device)
    dtype = torch.bfloat16 if dist["mixed_precision"] == "bf16" else torch.float32
    model, config = build_model(args.layers, args.tiny_widths, device, dtype)
    if dist["activation_checkpointing"]:
        model.gradient_checkpointing_enable()
    model.config.use_cache = True
    arch = memory.architecture_of(
        config, "qwen2.5-7b widths" + (" (tiny)" if args.tiny_widths else "")
    )
    head = ppo.ValueHead(config.hidden_size).to(device)
    opt = MasterAdamW([*model.parameters(), *head.parameters()], 1e-6, dist["offload_optimizer"])
    one_gpu = {**dist, "engine": "deepspeed"}  # what one process of the preset holds
    state = memory.training_state(arch.n_params, arch, one_gpu, 1)
    b = memory.compute_bytes(dist)

    reset(device)
    fixed = peak(device)
    report: dict = {
        "device": str(torch.cuda.get_device_name(device)) if device.type == "cuda" else "cpu",
        "host": platform.node(),
        "torch": torch.__version__,
        "layers": args.layers,
        "tiny_widths": args.tiny_widths,
        "parameters": arch.n_params,
        "distributed": dist,
        "fixed_state_measured_bytes": fixed,
        "fixed_state_estimated_bytes": sum(state.values()),
        "steps": {},
    }
    model.train()
    prompt_len, new = args.prompt_len, args.new_tokens
    ppo_tokens = args.micro * (prompt_len + new)
    answer_tokens = args.micro * (new + 1)  # RL losses take logits of the answers only
    steps = {
        "sft": (
            lambda: sft_step(model, opt, args.batch, args.seq, device),
            memory.training_activations(arch, args.batch * args.seq, dist),
        ),
        "ppo": (
            lambda: ppo_update(model, head, opt, args.prompts, prompt_len, new, args.micro, device),
            memory.training_activations(arch, ppo_tokens, dist, answer_tokens),
        ),
        "grpo": (
            lambda: grpo_step(
                model, opt, args.prompts, args.group, prompt_len, new, args.micro, device
            ),
            memory.training_activations(arch, ppo_tokens, dist, answer_tokens),
        ),
    }
    for name, (fn, activations) in steps.items():
        reset(device)
        seconds, tokens = timed(device, fn)
        measured = peak(device)
        gen = memory.generation(
            arch, args.prompts * (args.group if name == "grpo" else 1), prompt_len, new, b
        )
        estimated = sum(state.values()) + max(
            sum(activations.values()), sum(gen.values()) if name != "sft" else 0
        )
        record = {
            "seconds": seconds,
            "tokens_per_s": tokens / seconds,
            "peak_measured_bytes": measured,
            "peak_estimated_bytes": estimated,
            "activations_estimated_bytes": activations["activations"],
            "generation_estimated_bytes": sum(gen.values()) if name != "sft" else 0,
        }
        if measured is not None:
            record["peak_measured_per_layer_bytes"] = (measured - (fixed or 0)) / args.layers
            record["peak_estimated_per_layer_bytes"] = (
                estimated - sum(state.values())
            ) / args.layers
        report["steps"][name] = record
        per_layer = (estimated - sum(state.values())) / args.layers
        shown = "-" if measured is None else f"{measured / 1e9:.2f} GB"
        shown_layer = (
            "-" if measured is None else f"{record['peak_measured_per_layer_bytes'] / 1e6:.0f} MB"
        )
        print(
            f"{name:<5} {tokens / seconds:10.0f} tokens/s  peak measured {shown}, estimated "
            f"{estimated / 1e9:.2f} GB; per layer measured {shown_layer}, estimated "
            f"{per_layer / 1e6:.0f} MB"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
