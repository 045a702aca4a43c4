"""The `vllm` generation backend (config `generation.backend`), for evaluation; GRPO/RLOO use
vLLM through TRL's colocate mode (`grpo_vllm_args`).

NOT RUN on this project's machines (no GPU, and vllm is not installed here): the code follows
vLLM's documented offline API (`LLM`, `SamplingParams`, prompts given as token ids) and is
checked only for its plan-time and run-time errors. The token ids of a prompt are the same as
the `hf` backend's (`sftrl.chat.encode_text`), answers are cut at the first EOS as there, and
greedy decoding should give the same answers on the same checkpoint up to kernel numerics
(check on a GPU: see README, "Generation backends").
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BACKENDS = ("hf", "vllm")
# stages whose jobs generate with the configured backend (PPO samples with its own HF loop)
BACKEND_STAGES = ("eval", "rl")


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def backend_problems(config: Mapping[str, Any]) -> list[str]:
    """Plan-time errors of `generation.backend: vllm`: the package must be importable here and
    every job that would use it must get a GPU (`resources.<stage>.gpu` >= 1)."""
    if config["generation"]["backend"] != "vllm":
        return []
    problems = []
    if not vllm_installed():
        problems.append(
            "config key generation.backend = 'vllm': the vllm package is not installed "
            "(pip install vllm on a CUDA machine, or use backend 'hf')"
        )
    resources = config["resources"]
    for stage in BACKEND_STAGES:
        gpus = {**resources["default"], **resources.get(stage, {})}.get("gpu", 0)
        if not gpus:
            problems.append(
                f"config key generation.backend = 'vllm': resources.{stage}.gpu is 0, and vLLM "
                "needs CUDA (give the stage a GPU, or use backend 'hf')"
            )
    return problems


def require_cuda() -> None:
    import torch

    if not vllm_installed():
        raise RuntimeError("generation backend 'vllm' needs the vllm package (pip install vllm)")
    if not torch.cuda.is_available():
        raise RuntimeError("generation backend 'vllm' needs CUDA; use backend 'hf' on CPU")


def vllm_generate_ids(
    model_dir: str | Path,
    tokenizer,
    *,
    dtype: str = "float32",
    prompt_format: str = "raw",
    gpu_memory_utilization: float = 0.85,
):
    """A `GenerateIds` (see `sftrl.evaluate.hf_generate_ids`) backed by a vLLM engine on
    `model_dir`: `(prompts, *, max_new_tokens, temperature, n, seed, desc) -> ids`."""
    require_cuda()
    from vllm import LLM, SamplingParams

    from sftrl import chat
    from sftrl.evaluate import _eos_ids, _row_seed

    llm = LLM(
        model=str(model_dir),
        tokenizer=str(model_dir),
        dtype=dtype,
        seed=0,
        gpu_memory_utilization=gpu_memory_utilization,
        enable_prefix_caching=True,  # multi-try prompts share their prefix with the last try
    )

    eos = set(_eos_ids(_Saved(model_dir), tokenizer))  # the same EOS ids as the hf backend

    def generate_ids(prompts, *, max_new_tokens, temperature, n, seed, desc):
        del desc  # vLLM shows its own progress bar
        greedy = temperature == 0
        requests, params = [], []
        for i, text in enumerate(prompts):
            ids = chat.encode_text(tokenizer, text, prompt_format)
            requests.append({"prompt_token_ids": ids})
            params.append(
                SamplingParams(
                    n=1 if greedy else n,
                    temperature=float(temperature),
                    top_p=1.0,
                    top_k=-1,
                    max_tokens=int(max_new_tokens),
                    seed=None if greedy else _row_seed(seed, i, 0),
                    skip_special_tokens=True,
                )
            )
        outputs = llm.generate(requests, params, use_tqdm=True)
        result = []
        for out in outputs:
            per_prompt = []
            for sample in out.outputs:
                tokens = list(sample.token_ids)
                cut = next((k for k, t in enumerate(tokens) if t in eos), len(tokens))
                per_prompt.append(tokens[:cut])
            result.append(per_prompt * n if greedy else per_prompt)
        return result

    return generate_ids


class _Saved:
    """What `_eos_ids` reads of a model (its generation config), without loading the model."""

    def __init__(self, model_dir: str | Path):
        from transformers import GenerationConfig

        try:
            self.generation_config = GenerationConfig.from_pretrained(str(model_dir))
        except OSError:
            self.generation_config = None


def grpo_vllm_args(backend: str, gpu_memory_utilization: float = 0.3) -> dict[str, Any]:
    """GRPOConfig / RLOOConfig keywords of a backend: vLLM in TRL's colocate mode (the engine
    shares the training GPUs; TRL syncs the weights into it after every update)."""
    if backend not in BACKENDS:
        raise ValueError(f"generation backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "hf":
        return {"use_vllm": False}
    require_cuda()
    return {
        "use_vllm": True,
        "vllm_mode": "colocate",
        "vllm_gpu_memory_utilization": gpu_memory_utilization,
    }
