"""The multi-GPU engine of every training stage: DDP, or DeepSpeed ZeRO-2/3 through accelerate.

Why DeepSpeed (and not FSDP2): the published runs trained with DeepSpeed ZeRO-2 offload (Llama)
and ZeRO-3 offload (Qwen); TRL's SFT/GRPO trainers take a DeepSpeed config through
`TrainingArguments(deepspeed=...)`, and our PPO gets the same engine from
`Accelerator(deepspeed_plugin=...)`; ZeRO's bf16 mode keeps fp32 master weights and optimizer
states (offloadable to CPU), and TRL's generation helper gathers ZeRO-3 parameters. FSDP cannot
run on CPU at all (shared/docs STACK.md), so nothing of it could be tested here.

The settings come from the stage's `params["distributed"]` (config section `distributed`, the
same for every training stage), one `Distributed` value per job:
- `engine`: "ddp" (plain data parallel; one process = today's single-device run) | "deepspeed";
- `zero_stage` 2 | 3, `offload_optimizer`, `offload_params` (ZeRO-3): DeepSpeed only;
- `mixed_precision`: "no" | "bf16": bf16 compute on fp32 master weights (weights load fp32);
- `activation_checkpointing`, `full_determinism` (deterministic kernels; a CUDA slowdown),
  `save_dtype` of saved checkpoints (recorded in the manifest).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from sftrl.train.common import stage_params, world_size

ENGINES = ("ddp", "deepspeed")
MIXED_PRECISION = ("no", "bf16")
SAVE_DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class Distributed:
    engine: str = "ddp"
    zero_stage: int = 3
    offload_optimizer: bool = False
    offload_params: bool = False
    mixed_precision: str = "no"
    activation_checkpointing: bool = False
    full_determinism: bool = True
    save_dtype: str = "float32"

    def __post_init__(self):
        checks = {
            "engine": (self.engine, ENGINES),
            "zero_stage": (self.zero_stage, (2, 3)),
            "mixed_precision": (self.mixed_precision, MIXED_PRECISION),
            "save_dtype": (self.save_dtype, SAVE_DTYPES),
        }
        for key, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"distributed.{key} must be one of {allowed}, got {value!r}")
        if self.offload_params and not (self.engine == "deepspeed" and self.zero_stage == 3):
            raise ValueError("distributed.offload_params needs engine deepspeed with zero_stage 3")
        if self.offload_optimizer and self.engine != "deepspeed":
            raise ValueError("distributed.offload_optimizer needs engine deepspeed")

    @property
    def deepspeed(self) -> bool:
        return self.engine == "deepspeed"


def distributed(params: Mapping[str, Any]) -> Distributed:
    """The job's engine settings (the config's `distributed` section; defaults when absent),
    after checking that the job runs on the number of processes its id was planned for."""
    planned = params.get("world_size")
    if planned is not None and int(planned) != world_size():
        raise ValueError(
            f"world_size: the job was planned for {planned} processes but runs on "
            f"{world_size()} (WORLD_SIZE); its id would describe another run"
        )
    return stage_params(Distributed, params.get("distributed"))


def master_dtype(dist: Distributed, model_dtype: str = "float32") -> str:
    """dtype of the weights a training stage loads: fp32 masters under bf16 mixed precision
    (a bf16 AdamW step at lr 1e-6 leaves most bf16 weights unchanged), else `model.dtype`."""
    return "float32" if dist.mixed_precision == "bf16" else model_dtype


def model_dtype(params: Mapping[str, Any]) -> str:
    """The configured `model.dtype` the plan passes in a stage's params (float32 without)."""
    return (params.get("model") or {}).get("dtype", "float32")


def deepspeed_config(
    dist: Distributed,
    *,
    micro_batch_size: int | str = "auto",
    grad_accum: int | str = "auto",
    max_grad_norm: float | str = "auto",
) -> dict[str, Any]:
    """DeepSpeed config for `dist` ("auto" fields are filled by the HF Trainer integration)."""
    zero: dict[str, Any] = {
        "stage": dist.zero_stage,
        "overlap_comm": True,
        "contiguous_gradients": True,
    }
    if dist.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if dist.zero_stage == 3:
        # full 16-bit weights for save_pretrained / get_state_dict on rank 0
        zero["stage3_gather_16bit_weights_on_model_save"] = True
        if dist.offload_params:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        "zero_optimization": zero,
        "bf16": {"enabled": dist.mixed_precision == "bf16"},
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": grad_accum,
        "gradient_clipping": max_grad_norm,
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
    }


def trainer_arguments(dist: Distributed) -> dict[str, Any]:
    """The engine's `TrainingArguments` fields for TRL's SFT and GRPO/RLOO trainers."""
    if dist.deepspeed:
        _require_deepspeed()
    return {
        "bf16": dist.mixed_precision == "bf16",
        "use_cpu": not torch.cuda.is_available(),
        "full_determinism": dist.full_determinism,
        "activation_checkpointing": dist.activation_checkpointing,
        "deepspeed": deepspeed_config(dist) if dist.deepspeed else None,
    }


def accelerator(dist: Distributed, *, micro_batch_size: int, grad_accum: int, max_grad_norm):
    """An Accelerator for our own training loop (PPO). On a CPU-only machine it is told so:
    under `accelerate launch` a bare `Accelerator()` finds no GPU and runs independent copies;
    with cpu=True two processes form one DDP group over gloo. The scheduler steps once per
    optimizer step whatever the world size (our schedule counts optimizer steps)."""
    from accelerate import Accelerator
    from accelerate.utils import GradientAccumulationPlugin

    common = {
        # our loop has no prepared dataloader: sync every `grad_accum` micro-batches, whatever
        # an earlier trainer of this process left in accelerate's shared gradient state
        "gradient_accumulation_plugin": GradientAccumulationPlugin(
            num_steps=grad_accum, sync_with_dataloader=False
        ),
        "step_scheduler_with_optimizer": False,
        "mixed_precision": dist.mixed_precision,
    }
    if not dist.deepspeed:
        return Accelerator(cpu=not torch.cuda.is_available(), **common)
    _require_deepspeed()
    from accelerate.utils import DeepSpeedPlugin

    config = deepspeed_config(
        dist,
        micro_batch_size=micro_batch_size,
        grad_accum=grad_accum,
        max_grad_norm=max_grad_norm,
    )
    return Accelerator(deepspeed_plugin=DeepSpeedPlugin(hf_ds_config=config), **common)


def _require_deepspeed() -> None:
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        raise ValueError(
            "distributed.engine: deepspeed is not installed (pip install 'sftrl[gpu]')"
        )


def set_determinism(dist: Distributed, seed: int) -> None:
    """Deterministic kernels only when `full_determinism` asks (on CUDA they cost a large
    slowdown); CPU runs are bit-identical either way."""
    if not dist.full_determinism:
        return
    from transformers import enable_full_determinism

    enable_full_determinism(seed)
    # Deterministic mode also fills every new tensor with NaN (a debugging aid against reads of
    # uninitialised memory); on CPU that doubles the step time and changes no result.
    torch.utils.deterministic.fill_uninitialized_memory = False


def set_activation_checkpointing(model, dist: Distributed) -> None:
    if dist.activation_checkpointing:
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )


def prepare_reference(acc, model):
    """A frozen copy (the KL reference) on the engine: ZeRO-3 shards it like the policy, ZeRO-2
    keeps one full copy per device, DDP moves it to the process's device."""
    from accelerate.utils import DistributedType

    if acc.distributed_type == DistributedType.DEEPSPEED:
        from trl.models.utils import prepare_deepspeed

        return prepare_deepspeed(model, acc)
    return model.to(acc.device)


@contextmanager
def generation_model(acc, model, dist: Distributed):
    """The bare module for a sampling loop; under ZeRO-3 its parameters are gathered for the
    duration and the engine's partitioning hooks lifted (as TRL's unwrap-for-generation does,
    which expects a PreTrainedModel: ours is policy + value head)."""
    if not (dist.deepspeed and dist.zero_stage == 3):
        yield acc.unwrap_model(model)
        return
    import deepspeed
    from trl.models.utils import add_hooks, remove_hooks

    with deepspeed.zero.GatheredParameters(model.parameters()):
        remove_hooks(model)
        try:
            yield acc.unwrap_model(model)
        finally:
            add_hooks(model)


@contextmanager
def whole_model_loading():
    """Models loaded inside are whole on every process, also where ZeRO-3 would build them
    sharded (a frozen model used outside the engine: the probe's base model)."""
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedType

    shared = AcceleratorState._shared_state
    if shared.get("distributed_type") != DistributedType.DEEPSPEED:
        yield
        return
    with AcceleratorState().deepspeed_plugin.zero3_init_context_manager(enable=False):
        yield


def full_state_dict(acc, model, dist: Distributed) -> dict | None:
    """The complete weights of a prepared model, gathered on every process under DeepSpeed
    (collective: call on all ranks); None where the in-memory module is already complete."""
    return acc.get_state_dict(model) if dist.deepspeed else None


def save_checkpoint(acc, model, tokenizer, out_dir: str | Path | None, dist: Distributed):
    """Save a complete HF directory of `model` (prepared or not) in `dist.save_dtype`.

    Call on EVERY process: under ZeRO-3 the full state dict is gathered collectively; only the
    main process (out_dir not None) writes. Returns the path (None elsewhere)."""
    from sftrl.modeling import save_model

    state = full_state_dict(acc, model, dist)
    path = None
    if acc.is_main_process and out_dir is not None:
        core = acc.unwrap_model(model)
        was_training = core.training
        path = save_model(core, tokenizer, out_dir, dtype=dist.save_dtype, state_dict=state)
        core.train(was_training)
    acc.wait_for_everyone()
    return path


def manifest_fields(dist: Distributed) -> dict[str, Any]:
    """What the manifest summary records about the engine."""
    return {"world_size": world_size(), "distributed": asdict(dist)}
