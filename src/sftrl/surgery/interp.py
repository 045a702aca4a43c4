"""Linear interpolation of two checkpoints: ``W = (1 - alpha) W_T + alpha W_B``."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sftrl.surgery.common import cast_like, donor_tensor, operate
from sftrl.surgery.registry import Method, Param
from sftrl.weights import COMPUTE_DTYPES, DEFAULT_MAX_SHARD_BYTES, Weights, resolve_dtype

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def interpolate(
    donor_dir: str | Path,
    recipient_dir: str | Path,
    out_dir: str | Path,
    *,
    alpha: float,
    dtype: str = "float32",
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> dict[str, Any]:
    """``W = (1 - alpha) W_T + alpha W_B`` for every floating tensor present in both with equal
    shape. alpha = 0 copies the recipient and alpha = 1 the donor, bit for bit; values outside
    [0, 1] extrapolate. Non-floating tensors and tensors the donor lacks stay the recipient's."""
    alpha = float(alpha)
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}")
    cdtype = resolve_dtype(dtype)

    def produce(name: str, w_rec: torch.Tensor, donor: Weights) -> tuple[torch.Tensor, str]:
        if not w_rec.is_floating_point() or alpha == 0.0:
            return w_rec, "recipient"
        w_don = donor_tensor(donor, name, w_rec)
        if w_don is None:
            log.warning("%s: no donor tensor of shape %s; recipient kept", name, w_rec.shape)
            return w_rec, "recipient"
        if alpha == 1.0:
            return cast_like(w_don, w_rec), "donor"
        mixed = (1.0 - alpha) * w_rec.to(cdtype) + alpha * w_don.to(cdtype)
        return cast_like(mixed, w_rec), "interpolated"

    summary = {"method": "interp", "alpha": alpha, "dtype": dtype}
    return operate(donor_dir, recipient_dir, out_dir, produce, summary, max_shard_bytes)


def interp_setting(entry: dict[str, Any], n_layers: int) -> tuple[str, float]:
    return f"alpha={entry['alpha']}", float(entry["alpha"])


METHOD = Method(
    name="interp",
    function=interpolate,
    help="(1 - alpha) recipient + alpha donor",
    params=(
        Param("alpha", {"type": float, "required": True}),
        Param("dtype", {"choices": COMPUTE_DTYPES, "default": "float32"}),
    ),
    setting=interp_setting,
    label="interpolation",
    xlabel="interpolation weight α toward donor",
    swept="alpha",
    color="#e7298a",
    panel="interpolation",
    x_percent=False,
    order=2,
)
