"""Benchmark sftrl.spectrum.compute_spectrum against a naive per-matrix SVD.

Two synthetic model pairs (random weights written straight to safetensors with Llama/Qwen
tensor names; the target is the reference plus 10% relative Gaussian noise):

(a) "tiny": hidden 192, 4 layers, 4 heads, MLP 512, vocab 200, untied embeddings (fp32);
(b) "qwen0.5b": Qwen2.5-0.5B shapes (hidden 896, 14 heads, 2 KV heads -> k/v 128 x 896, MLP
    4864, vocab 151936, tied embeddings so there is no lm_head; bf16 like the released
    weights), restricted to ``--layers`` decoder layers and ``--vocab`` embedding rows
    (0: no embeddings).

Each measurement runs in a fresh subprocess (this script with ``--worker``) so that its peak
resident memory is its own: ``VmHWM`` from /proc/self/status, reset after the imports (Linux
``clear_refs``), so ``peak_rss_mib - rss_after_import_mib`` is what the computation added
(``ru_maxrss`` only without /proc: after fork + exec it still holds the parent's peak):

- ``ours``: ``compute_spectrum`` (every diagnostic of every matrix);
- ``naive_svd``: per matrix, ``torch.linalg.svd(W, full_matrices=False)`` of both models in
  the stored orientation (only the two SVDs, none of the diagnostics);
- ``cheap_svd``: the same two SVDs through ``sftrl.weights.thin_svd`` (tall orientation).

Usage::

    .venv/bin/python benchmarks/bench_spectrum.py --layers 2 --vocab 32768 \\
        --out benchmarks/results/spectrum.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MODES = ("ours", "naive_svd", "cheap_svd")


# --------------------------------------------------------------------------- synthetic models


def llama_shapes(
    hidden: int,
    layers: int,
    mlp: int,
    vocab: int,
    kv_dim: int,
    *,
    tied: bool,
    qkv_bias: bool,
) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, in the HF Llama/Qwen2 naming (nn.Linear weights are out x in)."""
    shapes: dict[str, tuple[int, ...]] = {}
    if vocab:
        shapes["model.embed_tokens.weight"] = (vocab, hidden)
        if not tied:
            shapes["lm_head.weight"] = (vocab, hidden)
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes[p + "self_attn.q_proj.weight"] = (hidden, hidden)
        shapes[p + "self_attn.k_proj.weight"] = (kv_dim, hidden)
        shapes[p + "self_attn.v_proj.weight"] = (kv_dim, hidden)
        shapes[p + "self_attn.o_proj.weight"] = (hidden, hidden)
        if qkv_bias:
            shapes[p + "self_attn.q_proj.bias"] = (hidden,)
            shapes[p + "self_attn.k_proj.bias"] = (kv_dim,)
            shapes[p + "self_attn.v_proj.bias"] = (kv_dim,)
        shapes[p + "mlp.gate_proj.weight"] = (mlp, hidden)
        shapes[p + "mlp.up_proj.weight"] = (mlp, hidden)
        shapes[p + "mlp.down_proj.weight"] = (hidden, mlp)
        shapes[p + "input_layernorm.weight"] = (hidden,)
        shapes[p + "post_attention_layernorm.weight"] = (hidden,)
    shapes["model.norm.weight"] = (hidden,)
    return shapes


def write_pair(root: Path, shapes: dict[str, tuple[int, ...]], dtype: str, seed: int) -> None:
    """Write ``root/ref`` and ``root/tgt`` (model.safetensors each), one tensor at a time."""
    import torch
    from safetensors.torch import save_file

    torch_dtype = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(seed)
    ref: dict[str, Any] = {}
    tgt: dict[str, Any] = {}
    for name, shape in shapes.items():
        if len(shape) == 1:
            w = torch.ones(shape)
            ref[name], tgt[name] = w.to(torch_dtype), w.to(torch_dtype)
            continue
        w = torch.randn(shape, generator=gen) * 0.02
        noise = torch.randn(shape, generator=gen) * 0.002  # 10% relative
        ref[name], tgt[name] = w.to(torch_dtype), (w + noise).to(torch_dtype)
        del w, noise
    for sub, tensors in (("ref", ref), ("tgt", tgt)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(root / sub / "model.safetensors"), metadata={"format": "pt"})


def describe(shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    matrices = {n: s for n, s in shapes.items() if len(s) == 2}
    largest = max(matrices.items(), key=lambda item: item[1][0] * item[1][1])
    return {
        "n_matrices": len(matrices),
        "matrix_params": sum(a * b for a, b in matrices.values()),
        "largest_matrix": {"name": largest[0], "shape": list(largest[1])},
        "largest_matrix_mib_fp32": largest[1][0] * largest[1][1] * 4 / 2**20,
        "shapes": sorted({f"{a}x{b}" for a, b in matrices.values()}),
    }


# --------------------------------------------------------------------------- worker


def _status_mib(field: str) -> float | None:
    """``VmRSS`` (current) or ``VmHWM`` (peak) of this process from /proc, in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_mib() -> tuple[float, str]:
    # ru_maxrss is NOT used when /proc is there: on Linux exec() carries the parent's RSS
    # high-water mark (taken at fork) into the child's ru_maxrss, so a parent that just wrote
    # a large model would inflate every measurement.
    hwm = _status_mib("VmHWM")
    if hwm is not None:
        return hwm, "VmHWM"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "ru_maxrss"


def worker(args: argparse.Namespace) -> None:
    """One measurement in this process; prints a JSON line."""
    t0 = time.perf_counter()
    import torch

    from sftrl import spectrum, weights

    torch.set_num_threads(args.threads)
    import_s = time.perf_counter() - t0
    k = weights.parse_k(args.k)
    baseline = _status_mib("VmRSS")
    reset = _reset_peak()
    device = weights.resolve_device(args.device)
    dtype = weights.resolve_dtype(args.dtype)
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        if args.worker == "ours":
            tables = spectrum.compute_spectrum(
                args.ref, args.tgt, k=k, device=args.device, dtype=args.dtype, progress=False
            )
            count = len(tables["per_matrix"])
        else:
            cheap = args.worker == "cheap_svd"
            with weights.Weights(args.ref) as ref, weights.Weights(args.tgt) as tgt:
                names = weights.matched_matrices(ref, tgt)
                for name in names:
                    for model in (ref, tgt):
                        w = model.get(name).to(device, dtype)
                        weights.thin_svd(w, cheap=cheap)
                        del w
                count = len(names)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    result = {
        "mode": args.worker,
        "n_matrices": count,
        "wall_s": min(times),
        "wall_s_all": times,
        "import_s": import_s,
        "rss_after_import_mib": baseline,
    }
    result["peak_rss_mib"], result["peak_rss_source"] = _peak_mib()
    result["peak_reset_after_import"] = reset
    if device.type == "cuda":
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


def measure(mode: str, pair: Path, args: argparse.Namespace, repeat: int) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        mode,
        "--ref",
        str(pair / "ref"),
        "--tgt",
        str(pair / "tgt"),
        "--k",
        str(args.k),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
        "--dtype",
        args.dtype,
        "--repeat",
        str(repeat),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main


def machine_info(threads: int, device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "device": device,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["load_avg_1m"] = os.getloadavg()[0]
    except (OSError, ImportError):
        pass
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/spectrum.json"))
    parser.add_argument("--layers", type=int, default=2, help="Qwen-shaped decoder layers")
    parser.add_argument(
        "--vocab", type=int, default=32768, help="Qwen-shaped embedding rows (0: none)"
    )
    parser.add_argument("--skip-qwen", action="store_true", help="only the tiny pair")
    parser.add_argument("--k", default="0.2", help="k for compute_spectrum (count or fraction)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per measurement")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--repeat", type=int, default=1, help="repeats of the Qwen-shaped runs")
    parser.add_argument("--workdir", type=Path, help="keep the synthetic models here")
    # worker mode (internal)
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--ref", help=argparse.SUPPRESS)
    parser.add_argument("--tgt", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    settings = {
        "tiny": {
            "shapes": llama_shapes(192, 4, 512, 200, 192, tied=False, qkv_bias=False),
            "dtype": "float32",
            "repeat": 5,
            "note": "hidden 192, 4 layers, 4 heads, MLP 512, vocab 200, untied; fp32",
        },
    }
    if not args.skip_qwen:
        settings["qwen0.5b"] = {
            "shapes": llama_shapes(
                896, args.layers, 4864, args.vocab, 128, tied=True, qkv_bias=True
            ),
            "dtype": "bfloat16",
            "repeat": args.repeat,
            "note": f"Qwen2.5-0.5B shapes, {args.layers} of 24 layers, embeddings "
            f"{args.vocab} of 151936 rows (tied: no lm_head); bf16 storage",
        }
    report: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(args.threads, args.device),
        "k": args.k,
        "compute_dtype": args.dtype,
        "settings": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench_spectrum-") as tmp:
        root = args.workdir or Path(tmp)
        for label, setting in settings.items():
            pair = root / label
            t0 = time.perf_counter()
            if not (pair / "tgt" / "model.safetensors").exists():
                write_pair(pair, setting["shapes"], setting["dtype"], seed=0)
            entry: dict[str, Any] = {
                "note": setting["note"],
                "storage_dtype": setting["dtype"],
                **describe(setting["shapes"]),
                "write_s": time.perf_counter() - t0,
            }
            for mode in MODES:
                print(f"{label}: {mode} ...", file=sys.stderr, flush=True)
                entry[mode] = measure(mode, pair, args, setting["repeat"])
                print(f"  {entry[mode]['wall_s']:.2f} s", file=sys.stderr, flush=True)
            entry["ratio_naive_svd_over_ours"] = (
                entry["naive_svd"]["wall_s"] / entry["ours"]["wall_s"]
            )
            entry["ratio_naive_svd_over_cheap_svd"] = (
                entry["naive_svd"]["wall_s"] / entry["cheap_svd"]["wall_s"]
            )
            entry["ours_extra_rss_mib"] = (
                entry["ours"]["peak_rss_mib"] - entry["ours"]["rss_after_import_mib"]
            )
            report["settings"][label] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: _short(v) for k, v in report["settings"].items()}, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)


def _short(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "n_matrices": entry["n_matrices"],
        **{f"{m}_s": round(entry[m]["wall_s"], 3) for m in MODES},
        "naive_svd/ours": round(entry["ratio_naive_svd_over_ours"], 3),
        "naive_svd/cheap_svd": round(entry["ratio_naive_svd_over_cheap_svd"], 3),
        "ours_peak_rss_mib": round(entry["ours"]["peak_rss_mib"]),
        "ours_extra_rss_mib": round(entry["ours_extra_rss_mib"]),
        "largest_matrix_mib_fp32": round(entry["largest_matrix_mib_fp32"], 1),
    }


if __name__ == "__main__":
    main()
