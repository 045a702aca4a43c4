"""UV merge (docs/science.md section 7): the donor's top/tail singular directions in the
recipient's matrices.

Per 2-D matrix present in both with equal shape and matching ``modules``: with thin SVDs
``W_B = U_B S_B V_B^T``, ``W_T = U_T S_T V_T^T`` and n = min(rows, cols), the replaced index set
is R = [0, k_top) U [n - k_tail, n). k_top and k_tail are counts, or fractions of n rounded half
up, clamped per matrix as the published code does (head = min(k_top, n), tail = min(k_tail,
n - head)), so an absolute k grid larger than a matrix's rank selects all of it. ``U'`` takes
the donor's columns on R and the recipient's elsewhere, likewise ``V'``, and
``W' = U' diag(S') V'^T`` with ``S' = S_T`` (``values="recipient"``, direction-only) or ``S'`` =
donor values on R (``values="donor"``). It is evaluated in the equivalent delta form

    W' = W_T - U_T[:, R] diag(S_T[R]) V_T[:, R]^T + U_B[:, R] diag(S'[R]) V_B[:, R]^T

which touches only the replaced triplets, so rounding is confined to what changes.

Edge cases: R empty -> the recipient's tensor (bit for bit, no SVD). R = everything (head +
tail = n): with ``values="donor"`` the donor's tensor (exact: ``U_B S_B V_B^T = W_B``); with
``values="recipient"`` it depends on ``full_rank``: ``"donor"`` (the published code) copies the
donor's tensor whole, its singular values included; ``"recipient_values"`` gives
``U_B diag(S_T) V_B^T``, which differs from W_B by the change in singular values. With
grouped-query attention this is the common case for k_proj/v_proj at paper scale. The summary
records per matrix the effective counts and whether the donor's tensor was copied whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sftrl.surgery.common import cast_like, donor_matrix, operate
from sftrl.surgery.registry import Method, Param
from sftrl.weights import (
    COMPUTE_DTYPES,
    DEFAULT_MAX_SHARD_BYTES,
    KSpec,
    Weights,
    check_k,
    module_filter,
    parse_k,
    resolve_device,
    resolve_dtype,
    resolve_k,
    thin_svd,
)

if TYPE_CHECKING:
    import torch

VALUES = ("recipient", "donor")
FULL_RANK = ("donor", "recipient_values")


def replaced_counts(rank: int, k_top: KSpec, k_tail: KSpec) -> tuple[int, int]:
    """(head, tail) counts after clamping: R = [0, head) U [rank - tail, rank), disjoint."""
    head = resolve_k(k_top, rank, minimum=0)
    tail = min(resolve_k(k_tail, rank, minimum=0), rank - head)
    return head, tail


def replaced_index(rank: int, head: int, tail: int) -> torch.Tensor:
    import torch

    return torch.cat([torch.arange(head), torch.arange(rank - tail, rank)])


def uv_merge_matrix(
    w_donor: torch.Tensor,
    w_recipient: torch.Tensor,
    head: int,
    tail: int,
    *,
    values: str = "recipient",
) -> torch.Tensor:
    """``U' diag(S') V'^T`` for one matrix (see the module docstring), in the inputs' dtype.

    ``head``/``tail`` are resolved counts with head + tail <= min(shape). No shortcuts: the
    edge cases (nothing or everything replaced) are handled by ``uv_merge``.
    """
    if values not in VALUES:
        raise ValueError(f"values must be one of {VALUES}, got {values!r}")
    rank = min(w_recipient.shape)
    if head < 0 or tail < 0 or head + tail > rank:
        raise ValueError(f"head {head} + tail {tail} outside [0, {rank}]")
    idx = replaced_index(rank, head, tail).to(w_donor.device)
    u_d, s_d, v_d = thin_svd(w_donor)
    u_r, s_r, v_r = thin_svd(w_recipient)
    s_new = (s_d if values == "donor" else s_r)[idx]
    removed = (u_r[:, idx] * s_r[idx]) @ v_r[:, idx].T
    added = (u_d[:, idx] * s_new) @ v_d[:, idx].T
    return w_recipient - removed + added


def uv_merge(
    donor_dir: str | Path,
    recipient_dir: str | Path,
    out_dir: str | Path,
    *,
    k_top: KSpec,
    k_tail: KSpec = 0,
    values: str = "recipient",
    full_rank: str = "donor",
    modules: str | list[str] | None = None,
    dtype: str = "float32",
    device: str = "auto",
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> dict[str, Any]:
    """UV merge of every matched 2-D matrix; returns a summary (also in ``surgery.json``)."""
    check_k(k_top, name="k_top", allow_zero=True)
    check_k(k_tail, name="k_tail", allow_zero=True)
    if values not in VALUES:
        raise ValueError(f"values must be one of {VALUES}, got {values!r}")
    if full_rank not in FULL_RANK:
        raise ValueError(f"full_rank must be one of {FULL_RANK}, got {full_rank!r}")
    dev, cdtype = resolve_device(device), resolve_dtype(dtype)
    keep = module_filter(modules)
    matrices: dict[str, dict[str, Any]] = {}

    def produce(name: str, w_rec: torch.Tensor, donor: Weights) -> tuple[torch.Tensor, str]:
        w_don = donor_matrix(donor, name, w_rec, keep)
        if w_don is None:
            return w_rec, "recipient"
        rank = min(w_rec.shape)
        head, tail = replaced_counts(rank, k_top, k_tail)
        whole = head + tail == rank and (values == "donor" or full_rank == "donor")
        matrices[name] = {"rank": rank, "k_top": head, "k_tail": tail, "copied_whole": whole}
        if head + tail == 0:
            return w_rec, "recipient"
        if whole:
            return cast_like(w_don, w_rec), "donor"
        merged = uv_merge_matrix(
            w_don.to(dev, cdtype), w_rec.to(dev, cdtype), head, tail, values=values
        )
        return cast_like(merged, w_rec), "merged"

    summary: dict[str, Any] = {
        "method": "uv",
        "k_top": k_top,
        "k_tail": k_tail,
        "values": values,
        "full_rank": full_rank,
        "modules": modules,
        "dtype": dtype,
        "matrices": matrices,  # filled by produce() before operate() writes the sidecar
    }
    return operate(donor_dir, recipient_dir, out_dir, produce, summary, max_shard_bytes)


def uv_setting(entry: dict[str, Any], n_layers: int) -> tuple[str, float]:
    """``top=0.2`` or ``top=0.1,tail=0.1``; x = top + tail (fraction of rank, or a count)."""
    top, tail = entry.get("top", 0), entry.get("tail", 0)
    label = f"top={top}" + (f",tail={tail}" if tail else "")
    return label, float(top) + float(tail)


K_HELP = "count, or fraction of each matrix's rank"
# The parameters a UV-merge-like method shares (config key, function argument, CLI option).
K_PARAMS = (
    Param("top", {"type": parse_k, "required": True, "help": K_HELP}, arg="k_top"),
    Param("tail", {"type": parse_k, "default": 0, "help": K_HELP + " (default 0)"}, arg="k_tail"),
)
COMPUTE_PARAMS = (
    Param("modules", {"nargs": "+", "default": None, "help": "regex/substring filters"}),
    Param("dtype", {"choices": COMPUTE_DTYPES, "default": "float32"}),
    Param("device", {"default": "auto"}, stage=False),
)

METHOD = Method(
    name="uv",
    function=uv_merge,
    help="replace top/tail singular directions by the donor's",
    params=(
        *K_PARAMS,
        Param("values", {"choices": VALUES, "default": "recipient"}),
        Param("full_rank", {"choices": FULL_RANK, "default": "donor"}),
        *COMPUTE_PARAMS,
    ),
    setting=uv_setting,
    label="UV merge",
    xlabel="top directions from donor (% of rank)",
    swept="top",
    color="#6a3d9a",
    panel="directions",
    x_percent=True,
    order=0,
)
