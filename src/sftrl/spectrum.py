"""Spectral diagnostics between two checkpoints (docs/science.md section 6).

For every 2-D tensor present in a reference model A and a target model B with the same shape,
thin SVDs ``W_b = U_b diag(S_b) V_b^T`` (reference) and ``W_t = U_t diag(S_t) V_t^T`` (target)
are compared. ``r = min(rows, cols)`` is called the matrix's *rank* (the size of the thin SVD);
``k`` selects the top-k singular triplets (an ``int`` count, or a ``float`` fraction of ``r``).
Angles are in radians.

Per matrix (``per_matrix.parquet``):

1. singular-value change by sorted index: ``ds = S_t - S_b``, ``rel_ds = ds / S_b`` (NaN where
   ``S_b == 0``); scalars ``sv_rel_l2 = ||ds|| / ||S_b||``, mean and max of ``|rel_ds|``.
2. principal angles between the top-k left subspaces span(U_b[:, :k]) and span(U_t[:, :k])
   (``angle_u_mean``, ``angle_u_max``), same for V. Cosines are the singular values of
   ``U_b,k^T U_t,k``; as in ``scipy.linalg.subspace_angles``, angles whose cosine^2 >= 1/2 are
   taken as arcsin of the singular values of the residual ``U_t,k - U_b,k (U_b,k^T U_t,k)``,
   because arccos loses all precision near 0 (float32: 1e-7 in the cosine is 4.5e-4 rad).
3. best-match cosine: ``max_j |<u_b,i, u_t,j>|`` with j over ALL r target vectors (a direction
   that moved to another index still counts as matched); ``bestmatch_u`` averages it over the
   top-k reference vectors, ``bestmatch_u_all`` over all r. The published code's ``align_u``
   (arXiv 2508.16546's analysis script) takes the max over the TOP-k target vectors only:
   ``mean_{i<k} max_{j<k} |<u_b,i, u_t,j>|``; the two agree at k = r and differ below.
4. projector distance ``||U_b,k U_b,k^T - U_t,k U_t,k^T||_F`` (``proj_u``), without n x n
   matrices: it equals ``sqrt(2k - 2||U_b,k^T U_t,k||_F^2) = sqrt(2 sum sin^2(theta_i))``, and
   the sines come from the residual of item 2, free of the cancellation in ``2k - 2||.||^2``.
   ``proj_u_norm = proj_u / sqrt(2k)`` lies in [0, 1].
5. energy split of ``dW = W_t - W_b`` with ``C = U_b^T dW V_b`` over the FULL thin bases:
   ``share_scaling = ||diag C||^2 / ||dW||^2``, ``share_rotation = (||C||^2 - ||diag C||^2) /
   ||dW||^2`` and ``share_outside = 1 - ||C||^2 / ||dW||^2``: the part of dW outside
   span(U_b) x span(V_b), non-zero only for non-square matrices (the thin basis of the longer
   side spans r of its dimensions). The three shares are in [0, 1] and sum to 1. When
   ``dW == 0`` they are NaN (undefined, and skipped by pandas means): ``dw_fro == 0`` says so.
   The published code's split uses the top-k block ``C_k = U_b,k^T dW V_b,k`` only:
   ``delta_energy_scaling = ||diag C_k||^2 / ||dW||^2``, ``delta_energy_rotation = (||C_k||^2 -
   ||diag C_k||^2) / ||dW||^2`` (equal to the shares at k = r; below, the rest of dW, outside
   the top-k block, is in neither).
6. out-of-subspace residual ``1 - ||U_b,k^T W_t V_b,k||_F^2 / sum_{i<k} S_b,i^2`` with the
   TOP-k reference bases in the numerator and the matching top-k energy in the denominator, so
   identical models give 0 for every k (with full bases the ratio would only compare Frobenius
   norms). It is not clipped: a negative value means the target holds more energy in the
   reference's top-k block than the reference did. ``U_b,k^T W_t V_b,k = diag(S_b,k) + C[:k,:k]``
   is taken from C, so identical models give exactly 0.
7. singular values of dW: ``dw_sv_max``, ``dw_stable_rank = ||dW||_F^2 / sigma_1^2``, the top
   ``dw_top`` as the list ``dw_top_sv``, and all of them per index (``s_dw``).

Per index (``per_index.parquet``, one row per matrix and singular index i < r): ``s_ref``,
``s_tgt``, ``ds``, ``rel_ds``, ``rel_index = index / rank``; per-index angle profiles:

- ``angle_u``: angle between ``u_b,i`` and ``u_t,i`` up to sign, ``arccos |<u_b,i, u_t,i>|``,
  evaluated as ``2 atan2(||u_b - s u_t||, ||u_b + s u_t||)`` (s the sign of the dot product),
  which is accurate at every angle. It is inflated where singular values are nearly equal (the
  vectors of a near-degenerate cluster may mix without the subspace moving), hence:
- ``bin_angle_u``: the index range is cut into ``bins`` contiguous, near-equal bins (default 20,
  i.e. 5% of the spectrum each, so matrices of any rank share one relative axis; index i is in
  bin ``floor(i * bins / r)``); the value is the MEAN principal angle between the reference's and
  the target's subspaces spanned by that bin's vectors, repeated on every index of the bin.
- ``bestmatch_u`` and ``bestmatch_idx_u`` (the j achieving it); the same for V.

Random-update null (``null="random_update"``, the default): the same diagnostics of
``W_b + R`` against ``W_b``, ``R`` a Gaussian matrix scaled to ``||R||_F = ||dW||_F`` (seeded by
``null_seed`` and the tensor name), as columns ``null_<name>`` next to every per-matrix scalar
in ``NULL_SCALARS`` and per-index profile in ``NULL_INDEX_COLUMNS``. It says what an update of
the same size with no structure gives (a random matrix is mostly rotation: a rotation share
near 1 - 1/r), so an angle or energy profile is read against it, not against zero.

Per layer (``per_layer.parquet``): one row per (layer, module) and one per layer with
``module == "*"`` (all modules of that layer; embeddings and lm_head have layer <NA>). Means of the
per-matrix diagnostics, energy shares weighted by ``dw_fro^2`` (sum of the parts over sum of the
totals), ``dw_fro`` and ``ref_fro`` as root-sum-squares.

Weights I/O, k selections and the thin SVD live in ``sftrl.weights``.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sftrl.weights import (
    COMPUTE_DTYPES,
    KSpec,
    Weights,
    check_k,
    layer_of,
    matched_matrices,
    module_filter,
    module_of,
    parse_k,
    resolve_device,
    resolve_dtype,
    resolve_k,
    singular_values,
    thin_svd,
)

# numpy, pandas, torch and safetensors are imported inside the functions that use them: the
# `sftrl` CLI imports this module to register its subcommand, and `sftrl ls` must start fast.
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

log = logging.getLogger(__name__)

DEFAULT_K: float = 0.2  # "top 20%" of the paper
DEFAULT_BINS = 20
DEFAULT_DW_TOP = 8
TABLES = ("per_matrix", "per_index", "per_layer")
NULLS = ("random_update", "none")


def principal_angles(
    a: torch.Tensor, b: torch.Tensor, cross: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Principal angles (ascending, radians) between span(a) and span(b), and the projector
    distance ``||a a^T - b b^T||_F``.

    ``a`` (m x p) and ``b`` (m x q) must have orthonormal columns; ``cross = a^T b`` may be
    passed when already computed. min(p, q) angles are returned.
    """
    import torch

    if cross is None:
        cross = a.T @ b
    p, q = a.shape[1], b.shape[1]
    cos = torch.linalg.svdvals(cross).clamp(0.0, 1.0)  # descending -> angles ascending
    # The residual of the smaller basis projected on the larger one has the sines as its
    # singular values (descending); flipped they pair with the descending cosines.
    resid = b - a @ cross if p >= q else a - b @ cross.T
    sin = torch.linalg.svdvals(resid).clamp(0.0, 1.0).flip(0)
    angles = torch.where(cos * cos >= 0.5, torch.arcsin(sin), torch.arccos(cos))
    # ||P_a - P_b||_F^2 = p + q - 2 sum cos^2 = |p - q| + 2 sum sin^2 (no cancellation).
    proj = torch.sqrt(abs(p - q) + 2.0 * (sin * sin).sum())
    return angles, proj


def paired_angles(a: torch.Tensor, b: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """Angle between column i of ``a`` and column i of ``b`` up to sign, for every i.

    ``2 atan2(||a_i - s b_i||, ||a_i + s b_i||)`` with s the sign of ``<a_i, b_i>`` equals
    ``arccos |<a_i, b_i>|`` for unit vectors and stays accurate near 0 (Kahan). Columns go in
    chunks so the temporaries stay small next to the bases themselves.
    """
    import torch

    out = []
    for start in range(0, a.shape[1], chunk):
        ac, bc = a[:, start : start + chunk], b[:, start : start + chunk]
        sign = torch.where((ac * bc).sum(0) < 0, -1.0, 1.0).to(ac.dtype)
        bc = bc * sign
        diff = torch.linalg.vector_norm(ac - bc, dim=0)
        summ = torch.linalg.vector_norm(ac + bc, dim=0)
        out.append(2.0 * torch.atan2(diff, summ))
    return torch.cat(out)


def bin_edges(rank: int, bins: int) -> list[int]:
    """Edges of ``min(bins, rank)`` contiguous bins; index i lies in bin floor(i * nb / rank)."""
    nb = max(1, min(bins, rank))
    return [-(-j * rank // nb) for j in range(nb + 1)]  # ceil(j * rank / nb)


def binned_angles(
    a: torch.Tensor, b: torch.Tensor, cross: torch.Tensor, bins: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per index: its bin, and the mean principal angle between span(a[:, bin]) and
    span(b[:, bin]) (see the module docstring)."""
    import torch

    rank = a.shape[1]
    edges = bin_edges(rank, bins)
    values = torch.empty(rank, dtype=a.dtype, device=a.device)
    which = torch.empty(rank, dtype=torch.int64)
    for j, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        angles, _ = principal_angles(a[:, lo:hi], b[:, lo:hi], cross[lo:hi, lo:hi])
        values[lo:hi] = angles.mean()
        which[lo:hi] = j
    return which, values


def _item(x: torch.Tensor) -> float:
    return float(x.item())


def matrix_diagnostics(
    w_ref: torch.Tensor,
    w_tgt: torch.Tensor,
    k: int,
    *,
    bins: int = DEFAULT_BINS,
    dw_top: int = DEFAULT_DW_TOP,
    ref_svd: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Every diagnostic for one pair of matrices (same shape, float dtype, same device).

    ``k`` is an already resolved count (1 <= k <= min(shape)); ``ref_svd``: ``thin_svd(w_ref)``
    when the caller has it (the null reuses the reference's). Returns (scalars, per-index
    arrays of length r); see the module docstring for the definitions.
    """
    import numpy as np
    import torch

    if w_ref.shape != w_tgt.shape or w_ref.ndim != 2:
        raise ValueError(f"need two matrices of one shape, got {w_ref.shape} and {w_tgt.shape}")
    rank = min(w_ref.shape)
    if not 1 <= k <= rank:
        raise ValueError(f"k = {k} outside [1, {rank}]")
    nan = float("nan")
    u_b, s_b, v_b = ref_svd if ref_svd is not None else thin_svd(w_ref)
    u_t, s_t, v_t = thin_svd(w_tgt)

    scalars: dict[str, Any] = {
        "ref_fro": _item(torch.linalg.vector_norm(s_b)),
        "tgt_fro": _item(torch.linalg.vector_norm(s_t)),
        "s1_ref": _item(s_b[0]),
        "s1_tgt": _item(s_t[0]),
    }
    per_index: dict[str, torch.Tensor] = {}

    # 1. singular-value change by index.
    ds = s_t - s_b
    positive = s_b > 0
    rel_ds = torch.where(positive, ds / torch.where(positive, s_b, 1.0), nan)
    s_norm = torch.linalg.vector_norm(s_b)
    scalars["sv_rel_l2"] = _item(torch.linalg.vector_norm(ds) / s_norm) if s_norm > 0 else nan
    abs_rel = rel_ds.abs()
    finite = abs_rel[~torch.isnan(abs_rel)]
    scalars["sv_rel_mean_abs"] = _item(finite.mean()) if finite.numel() else nan
    scalars["sv_rel_max_abs"] = _item(finite.max()) if finite.numel() else nan
    per_index.update(s_ref=s_b, s_tgt=s_t, ds=ds, rel_ds=rel_ds)

    # 2-4. subspaces, per side.
    for side, ref_basis, tgt_basis in (("u", u_b, u_t), ("v", v_b, v_t)):
        cross = ref_basis.T @ tgt_basis  # r x r, shared by items 2, 3 and the bins
        angles, proj = principal_angles(ref_basis[:, :k], tgt_basis[:, :k], cross[:k, :k])
        scalars[f"angle_{side}_mean"] = _item(angles.mean())
        scalars[f"angle_{side}_max"] = _item(angles.max())
        scalars[f"proj_{side}"] = _item(proj)
        scalars[f"proj_{side}_norm"] = _item(proj) / math.sqrt(2 * k)
        best, best_idx = cross.abs().max(dim=1)
        scalars[f"bestmatch_{side}"] = _item(best[:k].mean())
        scalars[f"align_{side}"] = _item(cross[:k, :k].abs().max(dim=1).values.mean())
        scalars[f"bestmatch_{side}_all"] = _item(best.mean())
        which_bin, bin_angle = binned_angles(ref_basis, tgt_basis, cross, bins)
        per_index[f"angle_{side}"] = paired_angles(ref_basis, tgt_basis)
        per_index[f"bestmatch_{side}"] = best
        per_index[f"bestmatch_idx_{side}"] = best_idx
        per_index[f"bin_angle_{side}"] = bin_angle
        per_index["bin"] = which_bin
        del cross

    # 5. energy split of dW in the reference's singular bases.
    dw = w_tgt - w_ref
    dw_sq = _item((dw * dw).sum())
    c = (u_b.T @ dw) @ v_b
    diag_sq = _item((torch.diagonal(c) ** 2).sum())
    c_sq = _item((c * c).sum())
    scalars["dw_fro"] = math.sqrt(dw_sq)
    scalars["dw_rel"] = scalars["dw_fro"] / scalars["ref_fro"] if scalars["ref_fro"] > 0 else nan
    if dw_sq > 0:
        # Exactly, 0 <= ||diag C||^2 <= ||C||^2 <= ||dW||^2; rounding can cross these bounds by
        # ~1e-7 relative, which the clipping removes so that every share lies in [0, 1].
        scalars["share_scaling"] = min(1.0, diag_sq / dw_sq)
        scalars["share_rotation"] = min(1.0, max(0.0, c_sq - diag_sq) / dw_sq)
        scalars["share_outside"] = min(1.0, max(0.0, 1.0 - c_sq / dw_sq))
        # the published code's split: the top-k block of C only
        top_diag_sq = _item((torch.diagonal(c[:k, :k]) ** 2).sum())
        top_sq = _item((c[:k, :k] ** 2).sum())
        scalars["delta_energy_scaling"] = min(1.0, top_diag_sq / dw_sq)
        scalars["delta_energy_rotation"] = min(1.0, max(0.0, top_sq - top_diag_sq) / dw_sq)
    else:
        scalars.update(share_scaling=nan, share_rotation=nan, share_outside=nan)
        scalars.update(delta_energy_scaling=nan, delta_energy_rotation=nan)

    # 6. out-of-subspace residual with the top-k reference bases.
    block = c[:k, :k] + torch.diag(s_b[:k])
    top_energy = _item((s_b[:k] ** 2).sum())
    scalars["residual"] = 1.0 - _item((block * block).sum()) / top_energy if top_energy else nan
    del c, block

    # 7. singular values of dW.
    s_dw = singular_values(dw)
    per_index["s_dw"] = s_dw
    scalars["dw_sv_max"] = _item(s_dw[0])
    scalars["dw_stable_rank"] = dw_sq / scalars["dw_sv_max"] ** 2 if dw_sq > 0 else nan
    scalars["dw_top_sv"] = [float(x) for x in s_dw[:dw_top].double().cpu()]

    integer = {"bin", "bestmatch_idx_u", "bestmatch_idx_v"}
    arrays = {
        key: value.detach().cpu().numpy().astype(np.int64 if key in integer else np.float64)
        for key, value in per_index.items()
    }
    return scalars, arrays


# --------------------------------------------------------------------------- tables

# Column order of per_index.parquet.
INDEX_COLUMNS = (
    "s_ref",
    "s_tgt",
    "ds",
    "rel_ds",
    "angle_u",
    "angle_v",
    "bestmatch_u",
    "bestmatch_v",
    "bestmatch_idx_u",
    "bestmatch_idx_v",
    "bin",
    "bin_angle_u",
    "bin_angle_v",
    "s_dw",
)

# Per-matrix diagnostics averaged per layer (plain means).
MEAN_COLUMNS = (
    "angle_u_mean",
    "angle_u_max",
    "angle_v_mean",
    "angle_v_max",
    "proj_u_norm",
    "proj_v_norm",
    "bestmatch_u",
    "bestmatch_v",
    "bestmatch_u_all",
    "bestmatch_v_all",
    "align_u",
    "align_v",
    "residual",
    "sv_rel_l2",
    "sv_rel_mean_abs",
    "dw_rel",
)
SHARE_COLUMNS = (
    "share_scaling",
    "share_rotation",
    "share_outside",
    "delta_energy_scaling",
    "delta_energy_rotation",
)


# What the random-update null repeats (module docstring): the direction and energy
# diagnostics (its size, dw_rel, equals the real update's by construction).
NULL_MEAN_COLUMNS = tuple(c for c in MEAN_COLUMNS if c not in ("sv_rel_mean_abs", "dw_rel"))
NULL_SCALARS = (*NULL_MEAN_COLUMNS, *SHARE_COLUMNS)
NULL_INDEX_COLUMNS = ("angle_u", "angle_v", "bin_angle_u", "bin_angle_v")


def null_columns(columns: Sequence[str]) -> list[str]:
    return [f"null_{column}" for column in columns]


def random_update(dw: torch.Tensor, seed: int, name: str) -> torch.Tensor:
    """A Gaussian matrix with the Frobenius norm of ``dw`` (seeded by seed and tensor name)."""
    import hashlib

    import torch

    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    r = torch.randn(dw.shape, generator=gen, dtype=torch.float64).to(dw.device, dw.dtype)
    norm = torch.linalg.vector_norm(r)
    return r * (torch.linalg.vector_norm(dw) / norm) if norm > 0 else r


def _aggregate(group: pd.DataFrame) -> dict[str, Any]:
    row: dict[str, Any] = {
        "n_matrices": len(group),
        "params": int((group["rows"] * group["cols"]).sum()),
    }
    with_null = "null_residual" in group
    for column in (*MEAN_COLUMNS, *(null_columns(NULL_MEAN_COLUMNS) if with_null else ())):
        row[column] = float(group[column].mean())
    energy = group["dw_fro"] ** 2  # the null's update has the same norm: the same weights
    total = float(energy.sum())
    for column in (*SHARE_COLUMNS, *(null_columns(SHARE_COLUMNS) if with_null else ())):
        # Energy-weighted: the share of the group's whole dW energy (NaN if it has none).
        row[column] = float((group[column] * energy).sum() / total) if total > 0 else math.nan
    row["dw_fro"] = math.sqrt(total)
    row["ref_fro"] = math.sqrt(float((group["ref_fro"] ** 2).sum()))
    row["dw_rel_total"] = row["dw_fro"] / row["ref_fro"] if row["ref_fro"] > 0 else math.nan
    return row


def per_layer_table(per_matrix: pd.DataFrame) -> pd.DataFrame:
    """Aggregates per (layer, module) plus one ``module == "*"`` row per layer."""
    import pandas as pd

    rows = []
    for (layer, module), group in per_matrix.groupby(["layer", "module"], dropna=False, sort=False):
        rows.append({"layer": layer, "module": module, **_aggregate(group)})
    for layer, group in per_matrix.groupby("layer", dropna=False, sort=False):
        rows.append({"layer": layer, "module": "*", **_aggregate(group)})
    table = pd.DataFrame(rows)
    table["layer"] = table["layer"].astype("Int64")
    table["_all"] = table["module"] == "*"
    table = table.sort_values(["layer", "_all", "module"], na_position="first", kind="stable")
    return table.drop(columns="_all").reset_index(drop=True)


def compute_spectrum(
    ref_dir: str | Path,
    tgt_dir: str | Path,
    *,
    k: KSpec = DEFAULT_K,
    modules: str | Sequence[str] | None = None,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "float32",
    progress: bool = True,
    bins: int = DEFAULT_BINS,
    dw_top: int = DEFAULT_DW_TOP,
    null: str = "random_update",
    null_seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """Diagnostics of every matched 2-D matrix of ``tgt_dir`` against ``ref_dir``, and of the
    random-update null beside them (``null="none"``: without).

    Streams one matrix pair at a time (memory: a small multiple of the largest matrix). Returns
    ``{"per_matrix", "per_index", "per_layer"}`` DataFrames (see the module docstring).
    """
    import numpy as np
    import pandas as pd
    from tqdm.auto import tqdm

    check_k(k)
    if bins < 1 or dw_top < 1:
        raise ValueError(f"bins ({bins}) and dw_top ({dw_top}) must be >= 1")
    if null not in NULLS:
        raise ValueError(f"spectrum.null must be one of {NULLS}, got {null!r}")
    dev, cdtype = resolve_device(device), resolve_dtype(dtype)
    keep = module_filter(modules)
    matrix_rows: list[dict[str, Any]] = []
    index_frames: list[pd.DataFrame] = []
    with Weights(ref_dir) as ref, Weights(tgt_dir) as tgt:
        names = matched_matrices(ref, tgt, keep)
        if not names:
            raise ValueError(f"no 2-D tensor of {ref_dir} matches {tgt_dir} and {modules!r}")
        for name in tqdm(names, desc="spectrum", unit="matrix", disable=not progress):
            w_ref = ref.get(name)
            stored = str(w_ref.dtype).removeprefix("torch.")
            w_ref = w_ref.to(dev, cdtype)
            w_tgt = tgt.get(name).to(dev, cdtype)
            rows, cols = w_ref.shape
            rank = min(rows, cols)
            kk = resolve_k(k, rank)
            ref_svd = thin_svd(w_ref)
            scalars, arrays = matrix_diagnostics(
                w_ref, w_tgt, kk, bins=bins, dw_top=dw_top, ref_svd=ref_svd
            )
            if null == "random_update":
                w_null = w_ref + random_update(w_tgt - w_ref, null_seed, name)
                null_scalars, null_arrays = matrix_diagnostics(
                    w_ref, w_null, kk, bins=bins, dw_top=dw_top, ref_svd=ref_svd
                )
                scalars.update((f"null_{c}", null_scalars[c]) for c in NULL_SCALARS)
                arrays.update((f"null_{c}", null_arrays[c]) for c in NULL_INDEX_COLUMNS)
                del w_null
            del w_ref, w_tgt, ref_svd
            layer, module = layer_of(name), module_of(name)
            matrix_rows.append(
                {
                    "name": name,
                    "layer": layer,
                    "module": module,
                    "shape": f"{rows}x{cols}",
                    "rows": rows,
                    "cols": cols,
                    "rank": rank,
                    "k": kk,
                    "stored_dtype": stored,
                    **scalars,
                }
            )
            frame = {
                "matrix": name,
                "layer": layer,
                "module": module,
                "index": np.arange(rank, dtype=np.int64),
                "rel_index": np.arange(rank, dtype=np.float64) / rank,
            }
            frame.update((column, arrays[column]) for column in INDEX_COLUMNS)
            if null == "random_update":
                frame.update((c, arrays[c]) for c in null_columns(NULL_INDEX_COLUMNS))
            index_frames.append(pd.DataFrame(frame))
    per_matrix = pd.DataFrame(matrix_rows)
    per_matrix["layer"] = per_matrix["layer"].astype("Int64")
    per_index = pd.concat(index_frames, ignore_index=True)
    per_index["layer"] = per_index["layer"].astype("Int64")
    return {
        "per_matrix": per_matrix,
        "per_index": per_index,
        "per_layer": per_layer_table(per_matrix),
    }


def write_tables(tables: dict[str, pd.DataFrame], out_dir: str | Path) -> list[Path]:
    """Write ``<name>.parquet`` for each table into ``out_dir`` (created if needed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in TABLES:
        path = out_dir / f"{name}.parquet"
        tables[name].to_parquet(path, index=False)
        paths.append(path)
    return paths


def summarize(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """A few whole-model numbers for manifests and the CLI."""
    pm = tables["per_matrix"]
    energy = pm["dw_fro"] ** 2
    total = float(energy.sum())
    summary: dict[str, Any] = {
        "n_matrices": len(pm),
        "params": int((pm["rows"] * pm["cols"]).sum()),
        "angle_u_mean": float(pm["angle_u_mean"].mean()),
        "angle_v_mean": float(pm["angle_v_mean"].mean()),
        "align_u_mean": float(pm["align_u"].mean()),
        "align_v_mean": float(pm["align_v"].mean()),
        "residual_mean": float(pm["residual"].mean()),
        "sv_rel_l2_mean": float(pm["sv_rel_l2"].mean()),
        "dw_rel_total": math.sqrt(total / float((pm["ref_fro"] ** 2).sum())),
    }
    shares = [*SHARE_COLUMNS, *(null_columns(SHARE_COLUMNS) if "null_residual" in pm else ())]
    for column in shares:
        summary[column] = float((pm[column] * energy).sum() / total) if total > 0 else None
    if "null_residual" in pm:
        summary["null_angle_u_mean"] = float(pm["null_angle_u_mean"].mean())
    return summary


def format_layer_summary(per_layer: pd.DataFrame) -> str:
    """Short per-layer text table (angles in degrees)."""
    import pandas as pd

    rows = per_layer[per_layer["module"] == "*"]
    lines = [
        f"{'layer':>6} {'n':>3} {'angle_u':>8} {'angle_v':>8} {'residual':>9} "
        f"{'dW/W':>8} {'rot':>6} {'scale':>6} {'out':>6}"
    ]
    for row in rows.itertuples(index=False):
        layer = "-" if pd.isna(row.layer) else str(row.layer)
        lines.append(
            f"{layer:>6} {row.n_matrices:>3} {math.degrees(row.angle_u_mean):>8.3f} "
            f"{math.degrees(row.angle_v_mean):>8.3f} {row.residual:>9.2e} "
            f"{row.dw_rel_total:>8.2e} {row.share_rotation:>6.3f} {row.share_scaling:>6.3f} "
            f"{row.share_outside:>6.3f}"
        )
    lines.append("angles: mean top-k principal angle in degrees; rot/scale/out: dW energy shares")
    return "\n".join(lines)


# --------------------------------------------------------------------------- stage and CLI

# Keys the workflow puts into params to describe the two models (label, run-time selection,
# path): they identify the inputs, not how to compute, so run() does not pass them on.
ROLE_KEYS = ("reference", "target")
PARAM_KEYS = ("k", "modules", "dtype", "bins", "dw_top", "null", "null_seed")


def run(spec: dict[str, Any]) -> None:
    """Stage entry point (docs/architecture.md, "Job spec").

    ``spec["inputs"]``: ``reference`` and ``target`` model directories. ``spec["params"]``:
    ``k`` (default 0.2), ``modules`` (None: every 2-D matrix), ``dtype`` ("float32"),
    ``bins`` (20), ``dw_top`` (8). Writes the three parquet tables into the artifact.
    """
    from sftrl import store

    params = {key: value for key, value in spec["params"].items() if key not in ROLE_KEYS}
    unknown = sorted(set(params) - set(PARAM_KEYS))
    if unknown:
        raise ValueError(f"spectrum: unknown params {unknown}; known: {list(PARAM_KEYS)}")
    with store.open_artifact(spec) as art:
        tables = compute_spectrum(
            spec["inputs"]["reference"],
            spec["inputs"]["target"],
            k=params.get("k", DEFAULT_K),
            modules=params.get("modules"),
            dtype=params.get("dtype", "float32"),
            bins=params.get("bins", DEFAULT_BINS),
            dw_top=params.get("dw_top", DEFAULT_DW_TOP),
            null=params.get("null", "random_update"),
            null_seed=params.get("null_seed", 0),
            progress=sys.stderr.isatty(),
        )
        write_tables(tables, art.path)
        art.summary.update(summarize(tables))


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``spectrum A B [--k 0.2] [--modules ...] [--out DIR] [--dtype float64]``.

    The handler is stored as both ``func`` and ``handler`` defaults; it returns an exit status.
    """
    parser = subparsers.add_parser(
        "spectrum",
        help="SVD diagnostics of every 2-D matrix of model B against model A",
        description="SVD diagnostics of every 2-D matrix of TARGET against REFERENCE "
        "(HF directories with safetensors weights).",
    )
    parser.add_argument("reference", help="reference model directory (A)")
    parser.add_argument("target", help="target model directory (B)")
    parser.add_argument(
        "--k",
        type=parse_k,
        default=DEFAULT_K,
        help="top-k: an integer count or a fraction of each matrix's rank (default 0.2)",
    )
    parser.add_argument(
        "--modules", nargs="+", default=None, help="regex/substring filters on tensor names"
    )
    parser.add_argument("--out", type=Path, help="write per_*.parquet into this directory")
    parser.add_argument("--dtype", choices=COMPUTE_DTYPES, default="float32")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1")
    parser.add_argument("--bins", type=int, default=DEFAULT_BINS, help="bins of the index axis")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_cli_spectrum, handler=_cli_spectrum)
    return parser


def _cli_spectrum(args: argparse.Namespace) -> int:
    tables = compute_spectrum(
        args.reference,
        args.target,
        k=args.k,
        modules=args.modules,
        device=args.device,
        dtype=args.dtype,
        bins=args.bins,
        progress=not args.no_progress,
    )
    if args.out is not None:
        for path in write_tables(tables, args.out):
            print(f"wrote {path}")
    print(format_layer_summary(tables["per_layer"]))
    summary = summarize(tables)
    print(
        f"{summary['n_matrices']} matrices, {summary['params']} parameters, "
        f"||dW||/||W|| = {summary['dw_rel_total']:.3e}"
    )
    return 0


def main(argv: Iterable[str] | None = None) -> int:
    """``python -m sftrl.spectrum A B ...`` (the same command as ``sftrl spectrum``)."""
    parser = argparse.ArgumentParser(prog="sftrl")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["spectrum", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
