"""How a training job is launched: the config's `distributed` section -> a command line.

One process: plain `python`. Several: `accelerate launch` with every setting on its command
line (no accelerate config file to keep in sync): DDP (`--multi_gpu`) or DeepSpeed ZeRO
(`--use_deepspeed --zero_stage ...`, CPU offload of optimizer states and, at stage 3,
parameters). Precision is bf16 compute with fp32 master weights (`--mixed_precision bf16`):
DeepSpeed keeps the fp32 masters in its optimizer, DDP under autocast keeps fp32 weights.

On CPU (the tests), several processes run as DDP over gloo: accelerate's `--cpu` launcher
starts one process only, so the multi-process launcher runs with ACCELERATE_USE_CPU=true.
DeepSpeed needs GPUs (accelerate refuses it with --cpu).
"""

from __future__ import annotations

import shlex
from typing import Any

ENGINES = ("ddp", "deepspeed")


def world_size(gpus: int) -> int:
    """Processes of a job holding `gpus` GPUs: one per GPU, one on CPU."""
    return max(1, int(gpus))


def launch_args(distributed: dict[str, Any], n_procs: int, cpu: bool = False) -> list[str]:
    """The launcher as an argument list (see `launch_command`)."""
    if n_procs <= 1:
        return ["python"]
    engine = distributed["engine"]
    if engine not in ENGINES:
        raise ValueError(f"config key distributed.engine = {engine!r}: must be one of {ENGINES}")
    common = [
        "--num_processes",
        str(n_procs),
        "--num_machines",
        "1",
        "--mixed_precision",
        distributed["mixed_precision"],
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",  # a free port: jobs sharing a node must not collide on 29500
    ]
    if cpu:
        if engine != "ddp":
            raise ValueError(
                "config key distributed.engine = 'deepspeed' needs GPUs: a CPU job with "
                f"{n_procs} processes can only run ddp"
            )
        return ["env", "ACCELERATE_USE_CPU=true", "accelerate", "launch", "--multi_gpu", *common]
    if engine == "ddp":
        return ["accelerate", "launch", "--multi_gpu", *common]
    stage = int(distributed["zero_stage"])
    offload_params = distributed["offload_params"] and stage == 3
    return [
        "accelerate",
        "launch",
        "--use_deepspeed",
        *common,
        "--zero_stage",
        str(stage),
        "--offload_optimizer_device",
        "cpu" if distributed["offload_optimizer"] else "none",
        "--offload_param_device",
        "cpu" if offload_params else "none",
        # ZeRO-3: build the model already sharded, and gather a full 16-bit state dict to save.
        "--zero3_init_flag",
        str(stage == 3).lower(),
        "--zero3_save_16bit_model",
        str(stage == 3).lower(),
    ]


def launch_command(distributed: dict[str, Any], n_procs: int, cpu: bool = False) -> str:
    """The command that runs `-m sftrl.jobs ...` for a job of `n_procs` processes.

    `distributed` is the config's validated `distributed` section; `cpu` launches several
    CPU processes (DDP over gloo) instead of one per GPU."""
    return shlex.join(launch_args(distributed, n_procs, cpu))
