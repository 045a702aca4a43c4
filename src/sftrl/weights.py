"""Weights I/O shared by the analysis stages: tensor names, sharded safetensors reading and
writing, matched matrices, k and layer selections, device/dtype resolution, the thin SVD.

torch and safetensors are imported inside the functions that use them, so that the `sftrl`
CLI (and the light surgery registry) can import this module without paying for torch.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import re
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

# Decoder layers: "model.layers.3." (Llama, Qwen), also "model.language_model.layers.3." and
# "language_model.model.layers.3." (multimodal wrappers such as Llama-3.2-Vision). A vision
# tower ("vision_model.transformer.layers.3.") deliberately does not match.
_LAYER_RE = re.compile(r"(?:^|\.)(?:model|language_model)\.layers\.(\d+)\.")

COMPUTE_DTYPES = ("float32", "float64")

KSpec = int | float


# --------------------------------------------------------------------------- names and options


def layer_of(name: str) -> int | None:
    """Decoder layer index parsed from a tensor name, or None (embeddings, lm_head, final norm)."""
    match = _LAYER_RE.search(name)
    return int(match.group(1)) if match else None


def module_of(name: str) -> str:
    """Module type: the component before ``.weight``/``.bias`` (q_proj, embed_tokens, lm_head)."""
    parts = name.split(".")
    if len(parts) > 1 and parts[-1] in ("weight", "bias"):
        return parts[-2]
    return parts[-1]


def natural_key(name: str) -> list[Any]:
    """Sort key that orders ``layers.2`` before ``layers.10``."""
    # re.split with a capturing group alternates text and digit runs, so types never collide.
    return [int(tok) if i % 2 else tok for i, tok in enumerate(re.split(r"(\d+)", name))]


def module_filter(patterns: str | Sequence[str] | None) -> Callable[[str], bool]:
    """Predicate on tensor names: True if any pattern matches (None or empty: everything).

    Each pattern is a Python regular expression searched anywhere in the full tensor name, so a
    plain substring such as ``q_proj`` or ``mlp`` works as is; a pattern that is not a valid
    regular expression is used as a literal substring.
    """
    if patterns is None:
        return lambda name: True
    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns:
        return lambda name: True
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error:
            compiled.append(re.compile(re.escape(pattern)))
    return lambda name: any(rx.search(name) for rx in compiled)


def check_k(k: KSpec, *, name: str = "k", allow_zero: bool = False) -> None:
    """Validate a k spec: an int count (>= 1, or >= 0), or a float fraction in (0, 1] / [0, 1]."""
    if isinstance(k, bool) or not isinstance(k, numbers.Real):
        raise TypeError(f"{name} must be an int count or a float fraction, got {k!r}")
    low = 0 if allow_zero else 1
    if isinstance(k, numbers.Integral):
        if k < low:
            raise ValueError(f"{name} = {k}: a count must be >= {low}")
        return
    if not (math.isfinite(k) and (0 <= k <= 1) and (allow_zero or k > 0)):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} = {k}: a fraction must lie in {interval}")


def resolve_k(k: KSpec, rank: int, *, minimum: int = 1) -> int:
    """Number of singular triplets for one matrix of thin-SVD size ``rank``.

    An int is a count, clipped to ``rank`` (so k=768 works on smaller matrices). A float is a
    fraction of ``rank``, rounded half up (0.2 of 35 -> 7, 0.5 of 33 -> 17). The result is at
    least ``minimum`` (1 for the diagnostics, which need a non-empty subspace).
    """
    if isinstance(k, numbers.Integral) and not isinstance(k, bool):
        count = int(k)
    else:
        count = math.floor(float(k) * rank + 0.5)
    return max(minimum, min(count, rank))


def parse_k(text: str) -> KSpec:
    """Command-line k: digits only is a count (``768``), anything else a fraction (``0.2``)."""
    text = text.strip()
    return int(text) if re.fullmatch(r"\d+", text) else float(text)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: the first CUDA device if there is one, else the CPU."""
    import torch

    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"`` or ``"float64"`` (or the torch dtype itself)."""
    import torch

    name = str(dtype).removeprefix("torch.")
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"compute dtype must be one of {COMPUTE_DTYPES}, got {dtype!r}")
    return getattr(torch, name)


# --------------------------------------------------------------------------- reading weights


def weight_files(model_dir: str | Path) -> list[Path]:
    """The safetensors files of an HF model directory (single file, or shards + index)."""
    model_dir = Path(model_dir)
    index = model_dir / INDEX_FILE
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return [model_dir / f for f in sorted(set(weight_map.values()))]
    if (model_dir / SINGLE_FILE).is_file():
        return [model_dir / SINGLE_FILE]
    shards = sorted(model_dir.glob("model-*.safetensors"))
    if shards:
        return shards
    raise FileNotFoundError(
        f"{model_dir}: no {SINGLE_FILE}, {INDEX_FILE} or model-*.safetensors "
        "(only safetensors checkpoints are supported)"
    )


class Weights:
    """Read-only, lazy view of the tensors of an HF model directory.

    Files are memory-mapped by safetensors; ``get`` materialises one tensor at a time, so a
    caller that drops each tensor after use holds at most a few in memory.
    """

    def __init__(self, model_dir: str | Path):
        from safetensors import safe_open

        self.dir = Path(model_dir)
        self._stack = ExitStack()
        self._where: dict[str, Any] = {}
        try:
            for path in weight_files(self.dir):
                handle = self._stack.enter_context(safe_open(str(path), framework="pt"))
                for name in handle.keys():
                    if name in self._where:
                        raise ValueError(f"{self.dir}: tensor {name} appears in two shards")
                    self._where[name] = handle
        except BaseException:
            self._stack.close()
            raise
        self._names = sorted(self._where, key=natural_key)

    def __enter__(self) -> Weights:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    def __contains__(self, name: object) -> bool:
        return name in self._where

    def names(self) -> list[str]:
        """Tensor names in natural order (layer 2 before layer 10)."""
        return list(self._names)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._where[name].get_slice(name).get_shape())

    def get(self, name: str) -> torch.Tensor:
        return self._where[name].get_tensor(name)


def matched_matrices(
    ref: Weights, tgt: Weights, keep: Callable[[str], bool] | None = None
) -> list[str]:
    """Names of the 2-D tensors present in both with equal shape, filtered, in natural order."""
    keep = keep or (lambda name: True)
    names = []
    for name in ref.names():
        shape = ref.shape(name)
        if len(shape) != 2 or not keep(name):
            continue
        if name not in tgt:
            log.warning("%s: not in %s; skipped", name, tgt.dir)
            continue
        if tgt.shape(name) != shape:
            log.warning("%s: shape %s vs %s; skipped", name, shape, tgt.shape(name))
            continue
        names.append(name)
    return names


# --------------------------------------------------------------------------- thin SVD


def thin_svd(
    w: torch.Tensor, *, cheap: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``W = U diag(S) V^T``: U (m x r), S (r,) descending, V (n x r), r = min(m, n).

    ``cheap=True`` runs the SVD on the tall orientation: for m < n, ``W^T = U2 S V2^T`` gives
    ``W = V2 S U2^T``, so U and V swap. LAPACK's gesdd through ``torch.linalg.svd`` on CPU was
    2.1x faster on 896x4864 given as 4864x896 (0.43 s vs 0.93 s, one thread), ``svdvals`` 4x.
    ``cheap=False`` is the direct call, kept for tests and the benchmark.
    """
    import torch

    if cheap and w.shape[0] < w.shape[1]:
        u2, s, v2h = torch.linalg.svd(w.T, full_matrices=False)
        return v2h.T, s, u2
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    return u, s, vh.T


def singular_values(w: torch.Tensor) -> torch.Tensor:
    """Singular values (descending), computed on the tall orientation (see ``thin_svd``)."""
    import torch

    return torch.linalg.svdvals(w.T if w.shape[0] < w.shape[1] else w)


# --------------------------------------------------------------------------- writing weights

DEFAULT_MAX_SHARD_BYTES = 5 * 1024**3
METADATA = {"format": "pt"}


class ShardWriter:
    """Collects output tensors and writes a shard with ``save_file`` each time the pending
    tensors reach ``max_bytes``; ``close`` names the files like ``save_pretrained`` does."""

    def __init__(self, out_dir: Path, max_bytes: int = DEFAULT_MAX_SHARD_BYTES):
        self.out_dir = out_dir
        self.max_bytes = max_bytes
        self.pending: dict[str, torch.Tensor] = {}
        self.pending_bytes = 0
        self.parts: list[tuple[Path, list[str]]] = []
        self.total_bytes = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        # save_file needs contiguous CPU tensors that share no storage with each other.
        tensor = tensor.detach().to("cpu").contiguous()
        size = tensor.numel() * tensor.element_size()
        if self.pending and self.pending_bytes + size > self.max_bytes:
            self._flush()
        self.pending[name] = tensor
        self.pending_bytes += size
        self.total_bytes += size

    def _flush(self) -> None:
        from safetensors.torch import save_file

        path = self.out_dir / f".part-{len(self.parts):05d}.safetensors"
        save_file(self.pending, str(path), metadata=METADATA)
        self.parts.append((path, list(self.pending)))
        self.pending, self.pending_bytes = {}, 0

    def close(self) -> list[str]:
        """Write the last shard, rename the parts, write the index if sharded; file names."""
        if self.pending or not self.parts:
            self._flush()
        if len(self.parts) == 1:
            self.parts[0][0].rename(self.out_dir / "model.safetensors")
            return ["model.safetensors"]
        count = len(self.parts)
        weight_map: dict[str, str] = {}
        names = []
        for i, (path, tensors) in enumerate(self.parts, start=1):
            name = f"model-{i:05d}-of-{count:05d}.safetensors"
            path.rename(self.out_dir / name)
            weight_map.update((tensor, name) for tensor in tensors)
            names.append(name)
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
        (self.out_dir / "model.safetensors.index.json").write_text(
            json.dumps(index, indent=2, sort_keys=True) + "\n"
        )
        return [*names, "model.safetensors.index.json"]


# --------------------------------------------------------------------------- layer selections

# Named fractions of decoder layers: "first_quarter" = layers [0, L/4).
_FRACTIONS = {"quarter": 0.25, "third": 1 / 3, "half": 0.5, "three_quarters": 0.75, "all": 1.0}


def _fraction_count(fraction: float, n_layers: int) -> int:
    return max(1, min(n_layers, math.floor(fraction * n_layers + 0.5)))


def parse_layers(layers: int | str | Iterable[int | str], n_layers: int) -> list[int]:
    """Decoder layer indices from a selection, sorted and unique.

    Accepted: an int; a list of ints; ``"3"``, ``"0-3"`` (inclusive), ``"0,2,5-7"``; ``"all"``;
    ``"first_quarter"``, ``"last_half"`` (quarter, third, half, three_quarters); and
    ``"first:0.25"`` / ``"last:0.25"`` for any fraction. A fraction f of L layers is
    round-half-up(f * L) layers, at least one: ``first_quarter`` of 28 is layers 0..6.
    """
    if isinstance(layers, bool):
        raise TypeError(f"invalid layer selection {layers!r}")
    if isinstance(layers, int):
        chosen = [layers]
    elif isinstance(layers, str):
        text = layers.strip().lower()
        chosen = []
        if text == "all":
            chosen = list(range(n_layers))
        elif text.startswith(("first", "last")):
            side, _, rest = text.replace(":", "_", 1).partition("_")
            if rest in _FRACTIONS:
                fraction = _FRACTIONS[rest]
            else:
                try:
                    fraction = float(rest)
                except ValueError:
                    raise ValueError(f"invalid layer selection {layers!r}") from None
            if not 0 < fraction <= 1:
                raise ValueError(f"{layers!r}: the fraction must lie in (0, 1]")
            count = _fraction_count(fraction, n_layers)
            chosen = (
                list(range(count)) if side == "first" else list(range(n_layers - count, n_layers))
            )
        else:
            for part in text.split(","):
                lo, dash, hi = part.strip().partition("-")
                if not lo.isdigit() or (dash and not hi.isdigit()):
                    raise ValueError(f"invalid layer selection {layers!r}")
                chosen.extend(range(int(lo), int(hi) + 1) if dash else [int(lo)])
    else:
        chosen = []
        for item in layers:
            if isinstance(item, bool):
                raise TypeError(f"invalid layer selection {layers!r}")
            chosen.extend(parse_layers(item, n_layers))
    bad = [i for i in chosen if not 0 <= i < n_layers]
    if bad:
        raise ValueError(f"layers {bad} outside the model's {n_layers} layers")
    return sorted(set(chosen))
