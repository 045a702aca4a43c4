"""Random-direction control of the UV merge: the same index ranges of U and V replaced by random
orthonormal directions instead of the donor's.

Per 2-D matrix (as in ``sftrl.surgery.uv``, same R = [0, k_top) U [n - k_tail, n), same
clamping): ``W' = W_T - U_T[:, R] diag(S_T[R]) V_T[:, R]^T + Q_U diag(S_T[R]) Q_V^T`` with
``Q_U`` (rows x |R|) and ``Q_V`` (cols x |R|) random orthonormal columns (QR of a standard
normal matrix, signs fixed so the draw is unique), the recipient's singular values kept. If
the donor's directions recover what SFT lost and random ones do not, the recovery is about
the donor's directions, not about disturbing the recipient's.

Seeded: each matrix draws from its own generator, seeded by SHA-256 of ``"<seed>:<name>"``, so
the result does not depend on the order or the filter of matrices. The donor is read only for
its shapes (a matrix the donor lacks is kept, as in the UV merge).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sftrl.surgery.common import cast_like, donor_matrix, operate
from sftrl.surgery.registry import Method, Param
from sftrl.surgery.uv import COMPUTE_PARAMS, K_PARAMS, replaced_counts, replaced_index, uv_setting
from sftrl.weights import (
    DEFAULT_MAX_SHARD_BYTES,
    KSpec,
    Weights,
    check_k,
    module_filter,
    resolve_device,
    resolve_dtype,
    thin_svd,
)

if TYPE_CHECKING:
    import torch


def random_orthonormal(rows: int, cols: int, generator: torch.Generator) -> torch.Tensor:
    """``rows x cols`` (cols <= rows) orthonormal columns, Haar-distributed, float64 on CPU."""
    import torch

    q, r = torch.linalg.qr(torch.randn(rows, cols, generator=generator, dtype=torch.float64))
    return q * torch.where(torch.diagonal(r) < 0, -1.0, 1.0)


def matrix_generator(seed: int, name: str) -> torch.Generator:
    import torch

    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "big") >> 1)


def uv_random_matrix(
    w_recipient: torch.Tensor, head: int, tail: int, generator: torch.Generator
) -> torch.Tensor:
    """The recipient with its triplets on R given random directions, in its dtype."""
    rank = min(w_recipient.shape)
    if head < 0 or tail < 0 or head + tail > rank:
        raise ValueError(f"head {head} + tail {tail} outside [0, {rank}]")
    idx = replaced_index(rank, head, tail).to(w_recipient.device)
    u_r, s_r, v_r = thin_svd(w_recipient)
    rows, cols = w_recipient.shape
    like = {"device": w_recipient.device, "dtype": w_recipient.dtype}
    q_u = random_orthonormal(rows, len(idx), generator).to(**like)
    q_v = random_orthonormal(cols, len(idx), generator).to(**like)
    removed = (u_r[:, idx] * s_r[idx]) @ v_r[:, idx].T
    return w_recipient - removed + (q_u * s_r[idx]) @ q_v.T


def uv_random(
    donor_dir: str | Path,
    recipient_dir: str | Path,
    out_dir: str | Path,
    *,
    k_top: KSpec,
    k_tail: KSpec = 0,
    seed: int = 0,
    modules: str | list[str] | None = None,
    dtype: str = "float32",
    device: str = "auto",
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> dict[str, Any]:
    """Random-direction control of every matched 2-D matrix; returns a summary."""
    check_k(k_top, name="k_top", allow_zero=True)
    check_k(k_tail, name="k_tail", allow_zero=True)
    dev, cdtype = resolve_device(device), resolve_dtype(dtype)
    keep = module_filter(modules)
    matrices: dict[str, dict[str, Any]] = {}

    def produce(name: str, w_rec: torch.Tensor, donor: Weights) -> tuple[torch.Tensor, str]:
        if donor_matrix(donor, name, w_rec, keep) is None:
            return w_rec, "recipient"
        rank = min(w_rec.shape)
        head, tail = replaced_counts(rank, k_top, k_tail)
        matrices[name] = {"rank": rank, "k_top": head, "k_tail": tail}
        if head + tail == 0:
            return w_rec, "recipient"
        generator = matrix_generator(seed, name)
        merged = uv_random_matrix(w_rec.to(dev, cdtype), head, tail, generator)
        return cast_like(merged, w_rec), "random"

    summary: dict[str, Any] = {
        "method": "uv_random",
        "k_top": k_top,
        "k_tail": k_tail,
        "seed": seed,
        "modules": modules,
        "dtype": dtype,
        "matrices": matrices,
    }
    return operate(donor_dir, recipient_dir, out_dir, produce, summary, max_shard_bytes)


METHOD = Method(
    name="uv_random",
    function=uv_random,
    help="control: replace top/tail singular directions by random orthonormal ones",
    params=(
        *K_PARAMS,
        Param("seed", {"type": int, "default": 0, "help": "seed of the random directions"}),
        *COMPUTE_PARAMS,
    ),
    setting=uv_setting,
    label="UV merge, random directions",
    xlabel="top directions replaced at random (% of rank)",
    swept="top",
    color="#999999",
    panel="directions",
    x_percent=True,
    order=3,
)
