"""Per-GPU memory plan of every training and evaluation job, before any job runs.

`estimate(plan, art)` adds up what one GPU of a job holds at its peak, in bytes:

- fixed state, from the parameter count of a meta-device model of the configured
  architecture (nothing is allocated or downloaded): weights, gradients and AdamW states
  under the configured engine (`distributed`): DDP keeps fp32 weights, grads, DDP's gradient
  buckets and AdamW (16 + 4 B/param) on every GPU; DeepSpeed bf16 keeps bf16 weights and
  grads plus fp32 masters and AdamW (2 + 2 + 12 B/param), ZeRO-2 sharding grads and optimizer
  over the GPUs, ZeRO-3 also the weights, offload moving the fp32 part (or the weights) to
  the CPU;
- activations saved for backward, per token and layer (fitted to saved-tensor hooks on
  Qwen2/Llama layers on CPU; at the real widths the fp32 formula gives STACK.md's measured
  422 KB/token/layer for Qwen2.5-7B and 369 KB for Llama-3.2-11B), or with activation
  checkpointing one layer input per layer plus one layer being recomputed; the logits and
  their log-softmax in fp32, with their gradients;
- RL: the KL reference copy, generation (KV cache, the prefill's transient, and under ZeRO-3
  the parameters gathered for generation); evaluation: weights, KV cache and prefill.

Sequence lengths are upper bounds from the config: a prompt is at most `sft.max_length`
tokens (it bounds prompt + answer in SFT), answers `max_new_tokens`, multi-try transcripts
grow by an answer and a feedback message (`FEEDBACK_TOKENS`) per try. Training and generation
are separate phases: the peak is fixed state + the larger of the two.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GB = 1e9
FEEDBACK_TOKENS = 64  # bound on one multi-try feedback message (a short sentence)
RUNTIME_ALLOWANCE = 2 * GB  # CUDA context, allocator fragmentation, communication buffers
TRAINING_STAGES = ("pretrain", "sft", "rl", "rlsft")
MEMORY_STAGES = (*TRAINING_STAGES, "eval")

# Architectures of the presets' hub ids, which cannot be downloaded here (transformers config
# kwargs, from the models' published config.json). A local model directory is read instead.
KNOWN_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "Qwen/Qwen2.5-7B-Instruct": {
        "model_type": "qwen2",
        "vocab_size": 152064,
        "hidden_size": 3584,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "intermediate_size": 18944,
        "tie_word_embeddings": False,
    },
    "meta-llama/Llama-3.2-11B-Vision-Instruct": {
        "model_type": "mllama",  # AutoModelForCausalLM builds MllamaForCausalLM: the text part
        "text_config": {
            "vocab_size": 128256,
            "hidden_size": 4096,
            "num_hidden_layers": 40,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "intermediate_size": 14336,
            "cross_attention_layers": [3, 8, 13, 18, 23, 28, 33, 38],
            "tie_word_embeddings": False,
        },
    },
}


@dataclass(frozen=True)
class Architecture:
    """What memory depends on. `layers` counts the decoder layers text passes through
    (Mllama's cross-attention layers are skipped without images, but hold parameters)."""

    name: str
    n_params: int
    layer_params: int  # the largest decoder layer
    hidden: int
    layers: int
    q_dim: int  # heads x head_dim
    kv_dim: int  # kv heads x head_dim
    intermediate: int
    vocab: int

    def layer_saved_bytes(self, b: int) -> int:
        """Activations one decoder layer saves for backward, per token, at compute width `b`
        bytes: the residual stream, q/k/v after RoPE, attention output (twice: SDPA's and
        o_proj's contiguous input), gate/up/SiLU/product of the MLP; both RMSNorms keep an
        fp32 normalised copy (8 B per hidden unit) whatever the compute dtype."""
        h, q, kv, i = self.hidden, self.q_dim, self.kv_dim, self.intermediate
        return b * (3 * h + 3 * q + 2 * kv + 4 * i) + 8 * h

    def head_saved_bytes(self, b: int) -> int:
        """Per token outside the layers: embedding output and final norm, then the logits
        and their fp32 log-softmax (`logits_saved_bytes`)."""
        return (2 * b + 4) * self.hidden + self.logits_saved_bytes(b)

    def logits_saved_bytes(self, b: int) -> int:
        return (b + 4) * self.vocab

    def kv_bytes_per_token(self, b: int) -> int:
        return 2 * self.layers * self.kv_dim * b


def model_config(model: dict[str, Any]):
    """The transformers config of the configured model (config `model` section)."""
    from transformers import AutoConfig

    if model["source"] == "tiny":
        from sftrl.modeling import tiny_config, tokenizer_vocabulary

        # the fixed vocabulary (+ a few words)
        return tiny_config(len(tokenizer_vocabulary([])), **model["tiny"])
    path = model["hf_path"]
    if (Path(path) / "config.json").is_file():
        return AutoConfig.from_pretrained(path)
    if path in KNOWN_ARCHITECTURES:
        kwargs = dict(KNOWN_ARCHITECTURES[path])
        return AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)
    from sftrl.config import ConfigError

    raise ConfigError(
        f"config key model.hf_path = {path!r}: no local model directory and not one of "
        f"sftrl.memory.KNOWN_ARCHITECTURES {sorted(KNOWN_ARCHITECTURES)}: the memory plan "
        "needs its architecture (give a local copy, or add its config there)"
    )


def architecture_of(config, name: str = "model") -> Architecture:
    """Count parameters on a meta-device model built from a transformers config."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    text = config.get_text_config()
    layers = model.model.layers
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    skipped = len(getattr(text, "cross_attention_layers", None) or [])
    return Architecture(
        name=name,
        n_params=sum(p.numel() for p in model.parameters()),
        layer_params=max(sum(p.numel() for p in layer.parameters()) for layer in layers),
        hidden=text.hidden_size,
        layers=len(layers) - skipped,
        q_dim=text.num_attention_heads * head_dim,
        kv_dim=kv_heads * head_dim,
        intermediate=text.intermediate_size,
        vocab=model.get_input_embeddings().weight.shape[0],
    )


@functools.lru_cache(maxsize=8)
def _architecture(model_json: str) -> Architecture:
    import json

    model = json.loads(model_json)
    name = model["hf_path"] if model["source"] == "hf" else "tiny"
    return architecture_of(model_config(model), name)


def architecture(model: dict[str, Any]) -> Architecture:
    """The configured model's architecture (cached: building the meta model takes seconds)."""
    import json

    return _architecture(json.dumps(model, sort_keys=True))


# ----------------------------------------------------------------------------- estimates


def compute_bytes(distributed: dict[str, Any]) -> int:
    return 2 if distributed["mixed_precision"] == "bf16" else 4


def training_state(n_params: int, arch: Architecture, dist: dict[str, Any], world: int) -> dict:
    """Weights, gradients and optimizer states on one GPU (bytes)."""
    b = compute_bytes(dist)
    p = n_params
    if dist["engine"] == "ddp":
        state = {"weights": 4 * p, "grads": 4 * p, "optimizer": 8 * p, "ddp buckets": 4 * p}
        if b == 2:
            state["bf16 weight copies"] = 2 * p  # autocast's cast of every weight
        if world == 1:
            del state["ddp buckets"]
        return state
    stage = dist["zero_stage"]
    masters = 4 if b == 2 else 0  # fp32 master weights beside bf16 ones
    sharded_weights = stage == 3
    weights = (
        0 if dist["offload_params"] and stage == 3 else b * p // (world if sharded_weights else 1)
    )
    state = {
        "weights": weights,
        "grads": b * p // world,
        "optimizer": 0 if dist["offload_optimizer"] else (masters + 8) * p // world,
    }
    if stage == 3:
        state["gathered layers"] = 2 * b * arch.layer_params  # the layer computed + the prefetched
    return state


def saved_activation_bytes(
    arch: Architecture,
    tokens: int,
    b: int,
    checkpointing: bool = False,
    logit_tokens: int | None = None,
) -> int:
    """Bytes autograd saves in one forward over `tokens` tokens (what a saved-tensors hook
    measures: the tests compare the two). With activation checkpointing each layer keeps only
    its input. Logits are kept for `logit_tokens` (default: every token)."""
    per_layer = b * arch.hidden if checkpointing else arch.layer_saved_bytes(b)
    logit_tokens = tokens if logit_tokens is None else logit_tokens
    stream = arch.head_saved_bytes(b) - arch.logits_saved_bytes(b)
    return tokens * (arch.layers * per_layer + stream) + logit_tokens * arch.logits_saved_bytes(b)


def training_activations(
    arch: Architecture, tokens: int, dist: dict[str, Any], logit_tokens: int | None = None
) -> dict:
    """Peak activations of one forward/backward over `tokens` tokens on one GPU (bytes): what
    is saved, plus in backward the layer being recomputed (checkpointing) and the gradients
    of the logits. RL losses need the logits of the answer tokens only (`logit_tokens`)."""
    b = compute_bytes(dist)
    ckpt = dist["activation_checkpointing"]
    logit_tokens = tokens if logit_tokens is None else logit_tokens
    saved = saved_activation_bytes(arch, tokens, b, ckpt, logit_tokens)
    recomputed = tokens * arch.layer_saved_bytes(b) if ckpt else 0
    return {"activations": saved + recomputed + logit_tokens * arch.logits_saved_bytes(b)}


def generation(arch: Architecture, sequences: int, prefill: int, new: int, b: int) -> dict:
    """KV cache of `sequences` x (`prefill` + `new`) tokens and the prefill's largest
    transient (MLP gate, up and product of every prefilled token; logits of the last only)."""
    return {
        "kv cache": sequences * (prefill + new) * arch.kv_bytes_per_token(b),
        "prefill": sequences * prefill * b * (2 * arch.hidden + 3 * arch.intermediate),
    }


def value_head_params(hidden: int) -> int:
    """sftrl.train.ppo.ValueHead: h -> h/4 -> h/8 -> 1 with biases."""
    a, c = hidden // 4, hidden // 8
    return hidden * a + a + a * c + c + c + 1


@dataclass
class Estimate:
    stage: str
    id: str
    label: str
    world: int
    parts: dict[str, int]  # component -> bytes on one GPU
    budget_gb: float | None  # resources.<stage>.gpu_mem_gb (None: not checked)
    gpus: int
    phase: str  # the phase at the peak: "train" or "generate"

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def total_gb(self) -> float:
        return self.total / GB

    @property
    def over(self) -> bool:
        return self.gpus > 0 and self.budget_gb is not None and self.total_gb > self.budget_gb

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v / GB:.1f}" for k, v in self.parts.items() if v)
        return f"{self.total_gb:.1f} GB per GPU ({parts})"


def _peak(fixed: dict, **phases: dict) -> tuple[dict, str]:
    """Fixed state plus the phase (training or generation) with the larger sum, and its name."""
    name = max(phases, key=lambda phase: sum(phases[phase].values()))
    return {**fixed, **phases[name], "runtime allowance": int(RUNTIME_ALLOWANCE)}, name


def estimate(plan, art) -> Estimate:
    """Peak per-GPU bytes of one job of the plan (stages in MEMORY_STAGES)."""
    from sftrl.plan import stage_resources

    resources = stage_resources(plan.config, art.stage)
    world = art.params.get("world_size", 1)
    fixed, phases = _job_memory(plan.config, art)
    parts, phase = _peak(fixed, **phases)
    return Estimate(
        art.stage,
        art.id,
        art.label,
        world,
        parts,
        resources.get("gpu_mem_gb"),
        resources["gpu"],
        phase,
    )


def _job_memory(config: dict[str, Any], art) -> tuple[dict, dict[str, dict]]:
    """(fixed state, {phase: its parts}) of one job, in bytes per GPU."""
    from sftrl.plan import rlsft_sft_params

    arch = architecture(config["model"])
    prompt = config["sft"]["max_length"]
    p = art.params
    if art.stage == "eval":
        b = 2 if p["dtype"] in ("bfloat16", "float16") else 4
        tries = p["multi_try"]["max_tries"] if p["multi_try"]["enabled"] else 1
        new = p["decoding"]["max_new_tokens"]
        # the last try prefills the prompt and every earlier answer and feedback
        prefill = prompt + (tries - 1) * (new + FEEDBACK_TOKENS)
        sequences = p["batch_size"] * p["decoding"]["n"]
        return {"weights": b * arch.n_params}, {
            "generate": generation(arch, sequences, prefill, new, b)
        }
    dist, world = p["distributed"], p["world_size"]
    b = compute_bytes(dist)
    n_params = arch.n_params
    phases: dict[str, dict] = {}
    extra: dict[str, int] = {}
    if art.stage in ("pretrain", "sft"):
        phases["train"] = training_activations(arch, p["batch_size"] * p["max_length"], dist)
    elif art.stage == "rlsft":
        sft = rlsft_sft_params(config)
        phases["train"] = training_activations(arch, sft["batch_size"] * sft["max_length"], dist)
        phases["generate"] = generation(arch, p["eval_batch_size"], prompt, p["max_new_tokens"], b)
    elif p["algorithm"] == "ppo":
        n_params += value_head_params(arch.hidden)
        rows, new = p["micro_batch_size"], p["max_new_tokens"]
        phases["train"] = training_activations(arch, rows * (prompt + new), dist, rows * (new + 1))
        phases["generate"] = generation(arch, p["rollout_batch_size"], prompt, new, b)
        if p["track_kl"] or p["kl_coef"] > 0:
            extra["kl reference"] = _reference_bytes(arch, dist, world)
    else:  # grpo / rloo through TRL: losses on the completion logits only
        rows, new = p["per_device_train_batch_size"], p["max_completion_length"]
        phases["train"] = training_activations(arch, rows * (prompt + new), dist, rows * (new + 1))
        # one generation batch: every completion of `grad_accum` steps
        phases["generate"] = generation(arch, rows * p["grad_accum"], prompt, new, b)
        if p["beta"] > 0:
            extra["kl reference"] = _reference_bytes(arch, dist, world)
    fixed = {**training_state(n_params, arch, dist, world), **extra}
    if "generate" in phases and dist["engine"] == "deepspeed" and dist["zero_stage"] == 3:
        # generation needs every parameter: ZeRO-3 gathers the full model for it
        phases["generate"] = {"gathered for generation": b * arch.n_params, **phases["generate"]}
    return fixed, phases


def _reference_bytes(arch: Architecture, dist: dict[str, Any], world: int) -> int:
    """A frozen copy at the policy's compute precision, sharded like the weights at ZeRO-3."""
    b = compute_bytes(dist)
    if dist["engine"] == "deepspeed" and dist["zero_stage"] == 3:
        return 0 if dist["offload_params"] else b * arch.n_params // world
    return b * arch.n_params


def memory_plan(plan) -> list[Estimate]:
    """Estimates of every training and evaluation job of a plan, in plan order."""
    return [estimate(plan, art) for art in plan.artifacts.values() if art.stage in MEMORY_STAGES]


def needs_check(config: dict[str, Any]) -> bool:
    """Whether any GPU stage has a memory budget (the tiny default has neither)."""
    from sftrl.plan import stage_resources

    for stage in MEMORY_STAGES:
        res = stage_resources(config, stage)
        if res["gpu"] > 0 and res.get("gpu_mem_gb") is not None:
            return True
    return False


def over_budget(plan) -> list[Estimate]:
    return [e for e in memory_plan(plan) if e.over]


def refusal(estimates: list[Estimate]) -> str:
    lines = [
        f"{e.stage} job {e.label!r} ({e.id}): estimated {e.describe()} > "
        f"resources.{e.stage}.gpu_mem_gb = {e.budget_gb:g}"
        for e in estimates
    ]
    return (
        "jobs that do not fit their GPUs (see `sftrl plan --memory`; shard with "
        "distributed.engine: deepspeed, offload, activation checkpointing, or more GPUs):\n  "
        + "\n  ".join(lines)
    )


COLUMNS = (
    "weights",
    "bf16 weight copies",
    "grads",
    "ddp buckets",
    "optimizer",
    "gathered layers",
    "kl reference",
    "activations",
    "gathered for generation",
    "kv cache",
    "prefill",
    "runtime allowance",
)


def format_table(estimates: list[Estimate]) -> list[str]:
    names = [k for k in COLUMNS if any(e.parts.get(k) for e in estimates)]
    header = ["stage", "job", "world", "peak in", *names, "total GB", "budget", ""]
    rows = []
    for e in estimates:
        budget = "-" if e.budget_gb is None or e.gpus == 0 else f"{e.budget_gb:g}"
        verdict = "OVER" if e.over else ("ok" if budget != "-" else "")
        cells = [f"{e.parts[k] / GB:.1f}" if e.parts.get(k) else "-" for k in names]
        row = [e.stage, e.label, str(e.world), e.phase, *cells, f"{e.total_gb:.1f}", budget]
        rows.append([*row, verdict])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
