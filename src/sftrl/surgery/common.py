"""What every surgery method shares: the output directory, the side files, the writing loop.

Every method reads a donor B and a recipient T (HF directories with safetensors weights) and
writes a complete HF model directory: every top-level non-weight file of the recipient (config,
generation config, tokenizer files, chat template) is copied, the weights are written by
``sftrl.weights.ShardWriter`` (one ``model.safetensors``, or shards plus an index once they pass
``max_shard_bytes``), and ``surgery.json`` records what was done.

The output always has exactly the recipient's tensors, names, shapes and dtypes. A tensor the
operation does not select is the recipient's stored tensor, bit for bit. Computations run in
float32 (or float64) and are cast back to the recipient's stored dtype; a tensor taken whole
from the donor is cast to the recipient's dtype (bit-identical when the dtypes agree).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sftrl.weights import DEFAULT_MAX_SHARD_BYTES, ShardWriter, Weights

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

SIDECAR = "surgery.json"

# Recipient files that are weights or training state, not part of the model description.
_SKIP_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")
_SKIP_NAMES = {"model.safetensors.index.json", "pytorch_model.bin.index.json", SIDECAR}
_SKIP_NAMES |= {"trainer_state.json", "training_args.bin"}


def prepare_out_dir(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; refusing to overwrite it")
    out.mkdir(parents=True, exist_ok=True)
    return out


def copy_side_files(recipient_dir: str | Path, out_dir: Path) -> list[str]:
    """Copy the recipient's top-level non-weight files (config, tokenizer, ...)."""
    copied = []
    for path in sorted(Path(recipient_dir).iterdir()):
        if not path.is_file() or path.name in _SKIP_NAMES or path.suffix in _SKIP_SUFFIXES:
            continue
        shutil.copy2(path, out_dir / path.name)
        copied.append(path.name)
    return copied


def operate(
    donor_dir: str | Path,
    recipient_dir: str | Path,
    out_dir: str | Path,
    produce: Callable[[str, torch.Tensor, Weights], tuple[torch.Tensor, str]],
    summary: dict[str, Any],
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> dict[str, Any]:
    """Run ``produce(name, recipient_tensor, donor) -> (tensor, action)`` over every recipient
    tensor, write the weights, side files and sidecar; fill the common summary fields.

    ``action`` is ``"recipient"`` for a tensor kept as stored, anything else (``"donor"``,
    ``"merged"``, ...) for a modified one; the summary counts each action.
    """
    import torch

    out = prepare_out_dir(out_dir)
    summary = {"donor": str(donor_dir), "recipient": str(recipient_dir), **summary}
    with Weights(donor_dir) as donor, Weights(recipient_dir) as recipient:
        writer = ShardWriter(out, max_shard_bytes)
        actions: dict[str, int] = {}
        modified: list[str] = []
        unchanged = 0
        names = recipient.names()
        for name in names:
            original = recipient.get(name)
            tensor, action = produce(name, original, donor)
            if tensor.dtype != original.dtype or tensor.shape != original.shape:
                raise AssertionError(f"{name}: produced {tensor.dtype} {tuple(tensor.shape)}")
            unchanged += bool(torch.equal(tensor, original))
            actions[action] = actions.get(action, 0) + 1
            if action != "recipient":
                modified.append(name)
            writer.add(name, tensor)
            del original, tensor
        files = writer.close()
    side = copy_side_files(recipient_dir, out)
    summary.update(
        tensors_total=len(names),
        tensors_modified=len(modified),
        tensors_bit_identical_to_recipient=unchanged,
        actions=dict(sorted(actions.items())),
        modified=modified,
        weight_files=files,
        copied_files=side,
    )
    (out / SIDECAR).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def donor_matrix(
    donor: Weights, name: str, w_rec: torch.Tensor, keep: Callable[[str], bool]
) -> torch.Tensor | None:
    """The donor's matrix for a recipient matrix a matrix method operates on: 2-D, floating,
    selected by ``keep`` and present in the donor with its shape; else None (the recipient's
    tensor is kept; a matrix missing from the donor is logged)."""
    if w_rec.ndim != 2 or not keep(name) or not w_rec.is_floating_point():
        return None
    w_don = donor_tensor(donor, name, w_rec)
    if w_don is None:
        log.warning("%s: no donor matrix of shape %s; recipient kept", name, w_rec.shape)
    return w_don


def donor_tensor(donor: Weights, name: str, like: torch.Tensor) -> torch.Tensor | None:
    """The donor's tensor ``name`` if it has the shape of ``like``, else None."""
    if name not in donor or donor.shape(name) != tuple(like.shape):
        return None
    return donor.get(name)


def cast_like(tensor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return tensor.to(device="cpu", dtype=like.dtype)
