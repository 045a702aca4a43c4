"""The training engine: 2 CPU processes (DDP over gloo) through the real `accelerate launch`
command run SFT, PPO and GRPO like one process with the same global batch; DeepSpeed ZeRO where
it can run; the engine settings and their checks."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rl_helpers import stage_spec, tiny_game_setup

from sftrl.train import engine, grpo, ppo, sft

DDP = {
    "engine": "ddp",
    "zero_stage": 3,
    "offload_optimizer": False,
    "offload_params": False,
    "mixed_precision": "no",
    "activation_checkpointing": False,
    "full_determinism": True,
    "save_dtype": "float32",
}


def launcher(n_procs: int) -> list[str]:
    """The rules' launcher (`sftrl.distributed.launch_command`) for `n_procs` CPU processes."""
    from sftrl.distributed import launch_command

    args = shlex.split(launch_command(DDP, n_procs, cpu=True))
    return [sys.executable] if args == ["python"] else args


def run_job(spec: dict, n_procs: int, tmp: Path) -> Path:
    """Run `-m sftrl.jobs --spec FILE` as the rules do; returns the artifact directory."""
    spec_file = tmp / f"{spec['id']}.json"
    spec_file.write_text(json.dumps(spec))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).parents[1] / "src"),
    }
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    cmd = [*launcher(n_procs), "-m", "sftrl.jobs", "--spec", str(spec_file)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return Path(spec["root"]) / spec["stage"] / spec["id"]


def first_line(path: Path) -> dict:
    return json.loads(path.read_text().splitlines()[0])


def one_artifact(art: Path) -> dict:
    """Exactly one artifact (with its manifest) under the stage's directory."""
    assert [p.name for p in art.parent.iterdir()] == [art.name]
    return json.loads((art / "manifest.json").read_text())


@pytest.fixture(scope="module")
def game(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    data, base, _ = tiny_game_setup(root, n_rl=8, n_sft=32)
    return root, data, base


@pytest.fixture(scope="module")
def sharp(game):
    """The base model with 10x sharper logits: at temperature 0.01 its answers are its greedy
    ones (the top-2 logit gap is ~1000 temperatures), so they do not depend on the sampler's
    random stream, which differs between 1 and 2 processes."""
    from sftrl.modeling import load_model, load_tokenizer, save_model

    root, _, base = game
    model = load_model(base, device="cpu")
    with torch.no_grad():
        model.lm_head.weight.mul_(10.0)
    return save_model(model, load_tokenizer(base), root / "sharp")


def pair(game, stage: str, params_for, inputs: dict) -> list[tuple[Path, dict]]:
    """The 1-process and the 2-process run of one job (same global batch)."""
    root, _, _ = game
    out = []
    for n in (1, 2):
        params = {**params_for(n), "world_size": n, "distributed": DDP}
        name = params.get("algorithm", stage)
        spec = stage_spec(root / f"{name}-{n}", stage, params, inputs)
        art = run_job(spec, n, root)
        out.append((art, one_artifact(art)))
    assert out[0][0].name != out[1][0].name  # the world size is in the id
    assert [m["summary"]["world_size"] for _, m in out] == [1, 2]
    return out


@pytest.mark.slow
def test_two_process_sft_matches_one_process(game):
    root, data, base = game

    def params(n):
        micro = {"batch_size": 16 // n, "lr": 3e-3, "warmup_steps": 0, "seed": 1, "data_seed": 1}
        return {**sft.DEFAULT_PARAMS, **micro, "epochs": [1]}

    (one, m1), (two, m2) = pair(game, "sft", params, {"data": data, "base_model": base})
    assert m1["summary"]["steps"] == m2["summary"]["steps"] == 2
    first = [first_line(a / "train_log.jsonl")["loss"] for a in (one, two)]
    assert first[1] == pytest.approx(first[0], rel=1e-4)
    for art in (one, two):
        assert (art / "epoch-1" / "model.safetensors").is_file()


# RL runs: 2 updates at the sharp model's greedy answers (see `sharp`), a save and a probe each
RL_MICRO = {"steps": 2, "temperature": 0.01, "save_every": 1, "sft_loss_every": 1}


def rl_pair(game, sharp, params_for) -> tuple[list[Path], list[dict]]:
    """The 1- and 2-process RL runs: artifact directories and first metrics lines."""
    _, data, base = game
    inputs = {"start_model": sharp, "base_model": base, "data": data}
    arts = [art for art, _ in pair(game, "rl", params_for, inputs)]
    return arts, [first_line(art / "metrics.jsonl") for art in arts]


@pytest.mark.slow
def test_two_process_ppo_matches_one_process(game, sharp):
    def params(n):
        batch = 8 // n  # episodes per process; one minibatch, one optimizer step per update
        micro = dict(rollout_batch_size=batch, minibatch_size=batch, micro_batch_size=batch)
        return {
            **ppo.DEFAULT_PARAMS,
            **RL_MICRO,
            **micro,
            "algorithm": "ppo",
            "ppo_epochs": 1,
            "max_new_tokens": 6,
            "whiten_advantages": False,  # a per-process statistic
            "sft_loss_rows": 4,
        }

    arts, rows = rl_pair(game, sharp, params)
    assert rows[0]["grad_norm"] > 0
    # the gradient norm after DDP's all-reduce is the 1-process one (independent copies: not)
    for key in ("reward", "policy_loss", "value_loss", "grad_norm", "completion_tokens"):
        assert rows[1][key] == pytest.approx(rows[0][key], rel=1e-4, abs=1e-6), key
    for art in arts:
        assert (art / "step-1").is_dir() and (art / "final" / "model.safetensors").is_file()
        assert (art / "value_head.safetensors").is_file()
        losses = [json.loads(x) for x in (art / "sft_loss.jsonl").read_text().splitlines()]
        assert [r["model"] for r in losses] == ["base", "start", "policy", "policy"]


@pytest.mark.slow
def test_two_process_grpo_matches_one_process(game, sharp):
    def params(n):
        return {
            **grpo.DEFAULT_PARAMS,
            **RL_MICRO,
            "algorithm": "grpo",
            "num_generations": 4,
            "per_device_train_batch_size": 8 // n,  # 2 hands x 4 answers per step in all
            "max_completion_length": 6,
            "sft_loss_rows": 4,
        }

    arts, rows = rl_pair(game, sharp, params)
    for key in ("reward", "loss", "completions/mean_length"):
        assert rows[1][key] == pytest.approx(rows[0][key], rel=1e-4, abs=1e-6), key
    for art in arts:
        assert (art / "step-1").is_dir() and (art / "final" / "model.safetensors").is_file()


# ----------------------------------------------------------------------------- settings


def test_distributed_settings_are_checked():
    assert engine.distributed({}) == engine.Distributed()
    assert engine.distributed({"distributed": DDP, "world_size": 1}).engine == "ddp"
    with pytest.raises(ValueError, match="world_size"):
        engine.distributed({"world_size": 4})
    with pytest.raises(ValueError, match="distributed.engine"):
        engine.distributed({"distributed": {**DDP, "engine": "fsdp"}})
    with pytest.raises(ValueError, match="distributed.offload_params"):
        engine.distributed(
            {"distributed": {**DDP, "engine": "deepspeed", "zero_stage": 2, "offload_params": True}}
        )
    bf16 = engine.Distributed(mixed_precision="bf16")
    assert engine.master_dtype(bf16, "bfloat16") == "float32"  # fp32 masters
    assert engine.master_dtype(engine.Distributed(), "bfloat16") == "bfloat16"


def test_deepspeed_config_follows_the_settings():
    dist = engine.Distributed(
        engine="deepspeed",
        zero_stage=3,
        offload_optimizer=True,
        offload_params=True,
        mixed_precision="bf16",
    )
    config = engine.deepspeed_config(dist, micro_batch_size=4, grad_accum=2, max_grad_norm=0.5)
    zero = config["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_param"]["device"] == "cpu"
    assert zero["offload_optimizer"]["device"] == "cpu" and config["bf16"]["enabled"]
    assert config["gradient_accumulation_steps"] == 2 and config["gradient_clipping"] == 0.5
    two = engine.deepspeed_config(engine.Distributed(engine="deepspeed", zero_stage=2))
    assert "offload_param" not in two["zero_optimization"] and not two["bf16"]["enabled"]


def test_save_dtype_is_written_and_fp32_default_unchanged(tmp_path):
    from rl_helpers import toy_policy

    from sftrl.modeling import load_model, save_model

    model, tok = toy_policy()
    save_model(model, tok, tmp_path / "a")
    save_model(model, tok, tmp_path / "b", dtype="float32")
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (
        tmp_path / "b" / "model.safetensors"
    ).read_bytes()
    save_model(model, tok, tmp_path / "c", dtype="bfloat16")
    loaded = load_model(tmp_path / "c", device="cpu", dtype="bfloat16")
    assert next(loaded.parameters()).dtype == torch.bfloat16
    assert json.loads((tmp_path / "c" / "config.json").read_text())["dtype"] == "bfloat16"
    assert next(model.parameters()).dtype == torch.float32  # the model in memory is untouched


# ----------------------------------------------------------------------------- DeepSpeed

DEEPSPEED_PPO = """
import json, sys, torch
sys.path.insert(0, {tests!r})
from rl_helpers import MICRO, TOY_ROWS, first_word_is_a, toy_policy
from sftrl.train import engine, ppo, rl_common
torch.set_num_threads(1)
dist = engine.Distributed(**json.loads(sys.argv[1]))
model, tok = toy_policy()
params = {{**MICRO, "steps": 2, "kl_coef": 0.1, "ppo_epochs": 1}}
summary = ppo.train_ppo(
    model, tok, rl_common.cycle_rows(TOY_ROWS, 0), first_word_is_a, params, sys.argv[2], dist=dist
)
"""


def one_process_group() -> dict[str, str]:
    """The environment a launcher gives one process (else DeepSpeed looks for MPI)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return {
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }


def run_ppo_script(tmp_path: Path, dist: dict, name: str) -> list[dict]:
    out = tmp_path / name
    out.mkdir()
    script = DEEPSPEED_PPO.format(tests=str(Path(__file__).parent))
    env = {**os.environ, "OMP_NUM_THREADS": "1", **one_process_group()}
    proc = subprocess.run(
        [sys.executable, "-c", script, json.dumps(dist), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("zero_stage", [2, 3])
def test_ppo_on_deepspeed_zero_matches_ddp(tmp_path, zero_stage):
    """One process: accelerate's DeepSpeed engine on DeepSpeed's CPU accelerator (gloo)."""
    pytest.importorskip("deepspeed", reason="DeepSpeed is the optional [gpu] extra")
    ddp = run_ppo_script(tmp_path, DDP, "ddp")
    ds = run_ppo_script(tmp_path, {**DDP, "engine": "deepspeed", "zero_stage": zero_stage}, "ds")
    for key in ("reward", "policy_loss", "value_loss", "kl_start"):
        assert ds[0][key] == pytest.approx(ddp[0][key], rel=1e-5, abs=1e-7), key
    assert ds[1]["reward"] == pytest.approx(ddp[1]["reward"], abs=0.2)
    assert (tmp_path / "ds" / "final" / "model.safetensors").is_file()
    assert (tmp_path / "ds" / "value_head.safetensors").is_file()


@pytest.mark.skip(
    reason="DeepSpeed cannot run on several CPU processes here: accelerate 1.15 turns DeepSpeed "
    "off under cpu=True (state.py: ACCELERATE_USE_DEEPSPEED ... and not cpu), and without it "
    "forms a process group only on an accelerator device (CUDA/XPU/NPU...), so 2 launched CPU "
    "processes become 2 independent 1-process DeepSpeed runs; scripts/gpu-check.sh runs this path"
)
def test_two_process_deepspeed():
    pass


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one process-wide state; a new mixed precision needs a fresh one."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_ppo_bf16_compute_keeps_fp32_masters_and_saves_bf16(tmp_path, fresh_accelerate_state):
    """mixed_precision bf16: autocast compute, the weights (and so AdamW's updates) stay fp32;
    activation checkpointing on; the checkpoint is written in save_dtype."""
    from rl_helpers import MICRO, TOY_ROWS, first_word_is_a, toy_policy
    from safetensors import safe_open

    from sftrl.train import rl_common

    dist = engine.Distributed(
        mixed_precision="bf16", activation_checkpointing=True, save_dtype="bfloat16"
    )
    model, tok = toy_policy()
    engine.set_activation_checkpointing(model, dist)
    before = model.model.layers[0].mlp.up_proj.weight.detach().clone()
    params = {**MICRO, "steps": 2, "kl_coef": 0.1}
    summary = ppo.train_ppo(
        model, tok, rl_common.cycle_rows(TOY_ROWS, 0), first_word_is_a, params, tmp_path, dist=dist
    )
    weight = model.model.layers[0].mlp.up_proj.weight
    assert weight.dtype == torch.float32 and not torch.equal(weight, before)
    assert summary["steps"] == 2
    with safe_open(str(tmp_path / "final" / "model.safetensors"), "pt") as f:
        assert all(f.get_tensor(k).dtype == torch.bfloat16 for k in f.keys())
