"""Layer reset (docs/science.md section 7): whole decoder layers copied from the donor.

The chosen layers' 2-D matrices (and, by switch, their 1-D norm weights and biases, the
embeddings, lm_head) are the donor's; every other tensor stays the recipient's. Layer
selections are parsed by ``sftrl.weights.parse_layers`` (``"0-3"``, ``"0,2,5-7"``,
``"first_quarter"``, ``"last:0.25"``, a list).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sftrl.surgery.common import cast_like, donor_tensor, operate
from sftrl.surgery.registry import Method, Param
from sftrl.weights import DEFAULT_MAX_SHARD_BYTES, Weights, layer_of, module_of, parse_layers

if TYPE_CHECKING:
    import torch

SWITCHES = ("embeddings", "lm_head", "norms", "biases")


def _reset_selects(name: str, ndim: int, chosen: set[int], switches: dict[str, bool]) -> bool:
    layer, module = layer_of(name), module_of(name)
    if layer is not None:
        if layer not in chosen:
            return False
        if ndim == 2:
            return True
        if name.endswith(".bias"):
            return switches["biases"]
        return switches["norms"] and "norm" in module
    if module in ("embed_tokens", "lm_head"):
        return switches["embeddings" if module == "embed_tokens" else "lm_head"]
    return False


def decoder_layers(model_dir: str | Path) -> int:
    """Number of decoder layers of a model directory, from its tensor names."""
    with Weights(model_dir) as weights:
        indices = {layer_of(n) for n in weights.names()} - {None}
    if not indices:
        raise ValueError(f"{model_dir}: no decoder layers (model.layers.<i>.) found")
    return max(i for i in indices if i is not None) + 1


def layer_reset(
    donor_dir: str | Path,
    recipient_dir: str | Path,
    out_dir: str | Path,
    *,
    layers: int | str | Iterable[int | str],
    embeddings: bool = False,
    lm_head: bool = False,
    norms: bool = False,
    biases: bool = False,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> dict[str, Any]:
    """Copy the chosen decoder layers' 2-D matrices (and, by switch, their 1-D norm weights and
    biases, the embeddings, lm_head) from donor to recipient. With tied embeddings there is no
    lm_head tensor and ``embeddings`` covers both."""
    n_layers = decoder_layers(recipient_dir)
    selected = parse_layers(layers, n_layers)
    chosen = set(selected)
    switches = {"embeddings": embeddings, "lm_head": lm_head, "norms": norms, "biases": biases}

    def produce(name: str, w_rec: torch.Tensor, donor: Weights) -> tuple[torch.Tensor, str]:
        if not _reset_selects(name, w_rec.ndim, chosen, switches):
            return w_rec, "recipient"
        w_don = donor_tensor(donor, name, w_rec)
        if w_don is None:
            raise ValueError(f"{name}: the donor has no tensor of shape {tuple(w_rec.shape)}")
        return cast_like(w_don, w_rec), "donor"

    summary: dict[str, Any] = {
        "method": "reset",
        "layers": selected,
        "layers_spec": layers if isinstance(layers, int | str) else list(layers),
        "n_layers": n_layers,
        **switches,
    }
    return operate(donor_dir, recipient_dir, out_dir, produce, summary, max_shard_bytes)


def reset_setting(entry: dict[str, Any], n_layers: int) -> tuple[str, float]:
    """``layers=0-6,embeddings=on``; x = share of the recipient's layers reset."""
    extras = [k for k in ("embeddings", "lm_head", "norms") if entry.get(k)]
    label = ",".join([f"layers={entry['layers']}", *(f"{k}=on" for k in extras)])
    return label, len(parse_layers(entry["layers"], n_layers)) / n_layers


METHOD = Method(
    name="reset",
    function=layer_reset,
    help="copy whole decoder layers from the donor",
    params=(
        Param("layers", {"required": True, "help": '"0-3", "0,2,5-7", "first_quarter"'}),
        *(
            Param(s, {"action": "store_true", "help": f"also copy {s.replace('_', '-')}"})
            for s in SWITCHES
        ),
    ),
    setting=reset_setting,
    label="layer reset",
    xlabel="layers reset to donor (% of layers)",
    swept="layers",
    color="#a6761d",
    panel="layers",
    x_percent=True,
    order=1,
)
