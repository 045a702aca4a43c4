"""Weight surgery between two checkpoints (docs/science.md section 7): UV merge, layer reset,
linear interpolation.

Every operation reads a donor B and a recipient T (HF directories with safetensors weights) and
writes a complete HF model directory: every top-level non-weight file of the recipient (config,
generation config, tokenizer files, chat template) is copied, the weights are written with
``safetensors.torch.save_file`` (metadata ``{"format": "pt"}``) as ``model.safetensors``, or as
``model-0000i-of-0000N.safetensors`` shards plus an index once they pass ``max_shard_bytes``
(only the current shard is held in memory), and ``surgery.json`` records what was done.

The output always has exactly the recipient's tensors, names, shapes and dtypes. A tensor the
operation does not select is the recipient's stored tensor, bit for bit. Computations run in
float32 (or float64) and are cast back to the recipient's stored dtype; a tensor taken whole
from the donor is cast to the recipient's dtype (bit-identical when the dtypes agree).

UV merge, per 2-D matrix present in both with equal shape and matching ``modules``: with thin
SVDs ``W_B = U_B S_B V_B^T``, ``W_T = U_T S_T V_T^T`` and n = min(rows, cols), the replaced
index set is R = [0, k_top) U [n - k_tail, n) (so an overlap of head and tail is simply their
union; k_top and k_tail are counts, or fractions of n rounded half up). ``U'`` takes the donor's
columns on R and the recipient's elsewhere, likewise ``V'``, and ``W' = U' diag(S') V'^T`` with
``S' = S_T`` (``values="recipient"``, direction-only) or ``S'`` = donor values on R
(``values="donor"``). It is evaluated in the equivalent delta form

    W' = W_T - U_T[:, R] diag(S_T[R]) V_T[:, R]^T + U_B[:, R] diag(S'[R]) V_B[:, R]^T

which touches only the replaced triplets, so rounding is confined to what changes. Edge cases:
R empty -> the recipient's tensor is copied (bit for bit, no SVD); R = everything with
``values="donor"`` -> the donor's tensor is copied (exact: ``U_B S_B V_B^T = W_B``). R =
everything with ``values="recipient"`` gives ``U_B diag(S_T) V_B^T``, which is NOT W_B: it differs
by the change in singular values (small by finding F4, but not zero), so the statement "k_top +
k_tail = n returns W_B" holds exactly for ``values="donor"`` only.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import math
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sftrl.spectrum import (
    COMPUTE_DTYPES,
    KSpec,
    Weights,
    check_k,
    layer_of,
    module_filter,
    module_of,
    parse_k,
    resolve_device,
    resolve_dtype,
    resolve_k,
    thin_svd,
)

# torch and safetensors are imported inside the functions that use them, so that the `sftrl`
# CLI can register this subcommand without paying for torch.
if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEFAULT_MAX_SHARD_BYTES = 5 * 1024**3
SIDECAR = "surgery.json"
METADATA = {"format": "pt"}

# Recipient files that are weights or training state, not part of the model description.
_SKIP_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")
_SKIP_NAMES = {"model.safetensors.index.json", "pytorch_model.bin.index.json", SIDECAR}
_SKIP_NAMES |= {"trainer_state.json", "training_args.bin"}

# Named fractions for layer_reset: "first_quarter" = layers [0, L/4).
_FRACTIONS = {"quarter": 0.25, "third": 1 / 3, "half": 0.5, "three_quarters": 0.75, "all": 1.0}


# --------------------------------------------------------------------------- output


def _prepare_out_dir(out_dir: str | Path) -> Path:
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


def _write_model(
    recipient: Weights,
    recipient_dir: str | Path,
    out: Path,
    produce: Callable[[str, torch.Tensor], tuple[torch.Tensor, str]],
    summary: dict[str, Any],
    max_shard_bytes: int,
) -> dict[str, Any]:
    """Run ``produce(name, recipient_tensor) -> (tensor, action)`` over every recipient tensor,
    write the weights, side files and sidecar; fill the common summary fields."""
    import torch

    writer = ShardWriter(out, max_shard_bytes)
    actions: dict[str, int] = {}
    modified: list[str] = []
    unchanged = 0
    names = recipient.names()
    for name in names:
        original = recipient.get(name)
        tensor, action = produce(name, original)
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


def _cast_like(tensor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return tensor.to(device="cpu", dtype=like.dtype)


# --------------------------------------------------------------------------- UV merge


def replaced_counts(rank: int, k_top: KSpec, k_tail: KSpec) -> tuple[int, int]:
    """(head, tail) counts after clipping: R = [0, head) U [rank - tail, rank), disjoint."""
    head = resolve_k(k_top, rank, minimum=0)
    tail = min(resolve_k(k_tail, rank, minimum=0), rank - head)
    return head, tail


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
    import torch

    if values not in ("recipient", "donor"):
        raise ValueError(f"values must be 'recipient' or 'donor', got {values!r}")
    rank = min(w_recipient.shape)
    if head < 0 or tail < 0 or head + tail > rank:
        raise ValueError(f"head {head} + tail {tail} outside [0, {rank}]")
    idx = torch.cat([torch.arange(head), torch.arange(rank - tail, rank)]).to(w_donor.device)
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
    modules: str | Sequence[str] | None = None,
    dtype: str = "float32",
    device: str = "auto",
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> dict[str, Any]:
    """UV merge of every matched 2-D matrix; returns a summary (also in ``surgery.json``)."""
    check_k(k_top, name="k_top", allow_zero=True)
    check_k(k_tail, name="k_tail", allow_zero=True)
    if values not in ("recipient", "donor"):
        raise ValueError(f"values must be 'recipient' or 'donor', got {values!r}")
    dev, cdtype = resolve_device(device), resolve_dtype(dtype)
    keep = module_filter(modules)
    out = _prepare_out_dir(out_dir)
    matrices: dict[str, dict[str, Any]] = {}

    def produce(name: str, w_rec: torch.Tensor) -> tuple[torch.Tensor, str]:
        if w_rec.ndim != 2 or not keep(name) or not w_rec.is_floating_point():
            return w_rec, "recipient"
        if name not in donor or donor.shape(name) != tuple(w_rec.shape):
            log.warning("%s: no donor matrix of shape %s; recipient kept", name, w_rec.shape)
            return w_rec, "recipient"
        rank = min(w_rec.shape)
        head, tail = replaced_counts(rank, k_top, k_tail)
        matrices[name] = {"rank": rank, "k_top": head, "k_tail": tail}
        if head + tail == 0:
            return w_rec, "recipient"
        if head + tail == rank and values == "donor":
            return _cast_like(donor.get(name), w_rec), "donor"
        merged = uv_merge_matrix(
            donor.get(name).to(dev, cdtype), w_rec.to(dev, cdtype), head, tail, values=values
        )
        return _cast_like(merged, w_rec), "merged"

    summary: dict[str, Any] = {
        "method": "uv",
        "donor": str(donor_dir),
        "recipient": str(recipient_dir),
        "k_top": k_top,
        "k_tail": k_tail,
        "values": values,
        "modules": modules,
        "dtype": dtype,
        "matrices": matrices,  # filled by produce() before _write_model writes the sidecar
    }
    with Weights(donor_dir) as donor, Weights(recipient_dir) as recipient:
        return _write_model(recipient, recipient_dir, out, produce, summary, max_shard_bytes)


# --------------------------------------------------------------------------- layer reset


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


def _reset_selects(
    name: str,
    ndim: int,
    chosen: set[int],
    *,
    embeddings: bool,
    lm_head: bool,
    norms: bool,
    biases: bool,
) -> bool:
    layer, module = layer_of(name), module_of(name)
    if layer is not None:
        if layer not in chosen:
            return False
        if ndim == 2:
            return True
        if name.endswith(".bias"):
            return biases
        return norms and "norm" in module
    if module == "embed_tokens":
        return embeddings
    if module == "lm_head":
        return lm_head
    return False


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
    biases, the embeddings, lm_head) from donor to recipient. The authors' code also replaced
    embeddings and lm_head and kept norms and biases: ``embeddings=True, lm_head=True``. With
    tied embeddings there is no lm_head tensor and ``embeddings`` covers both."""
    out = _prepare_out_dir(out_dir)

    def produce(name: str, w_rec: torch.Tensor) -> tuple[torch.Tensor, str]:
        if not _reset_selects(
            name,
            w_rec.ndim,
            chosen,
            embeddings=embeddings,
            lm_head=lm_head,
            norms=norms,
            biases=biases,
        ):
            return w_rec, "recipient"
        if name not in donor or donor.shape(name) != tuple(w_rec.shape):
            raise ValueError(f"{name}: the donor has no tensor of shape {tuple(w_rec.shape)}")
        return _cast_like(donor.get(name), w_rec), "donor"

    with Weights(donor_dir) as donor, Weights(recipient_dir) as recipient:
        indices = {layer_of(n) for n in recipient.names()} - {None}
        if not indices:
            raise ValueError(f"{recipient_dir}: no decoder layers (model.layers.<i>.) found")
        n_layers = max(i for i in indices if i is not None) + 1
        selected = parse_layers(layers, n_layers)
        chosen = set(selected)
        summary: dict[str, Any] = {
            "method": "reset",
            "donor": str(donor_dir),
            "recipient": str(recipient_dir),
            "layers": selected,
            "layers_spec": layers if isinstance(layers, int | str) else list(layers),
            "n_layers": n_layers,
            "embeddings": embeddings,
            "lm_head": lm_head,
            "norms": norms,
            "biases": biases,
        }
        return _write_model(recipient, recipient_dir, out, produce, summary, max_shard_bytes)


# --------------------------------------------------------------------------- interpolation


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
    out = _prepare_out_dir(out_dir)

    def produce(name: str, w_rec: torch.Tensor) -> tuple[torch.Tensor, str]:
        if not w_rec.is_floating_point() or alpha == 0.0:
            return w_rec, "recipient"
        if name not in donor or donor.shape(name) != tuple(w_rec.shape):
            log.warning("%s: no donor tensor of shape %s; recipient kept", name, w_rec.shape)
            return w_rec, "recipient"
        w_don = donor.get(name)
        if alpha == 1.0:
            return _cast_like(w_don, w_rec), "donor"
        mixed = (1.0 - alpha) * w_rec.to(cdtype) + alpha * w_don.to(cdtype)
        return _cast_like(mixed, w_rec), "interpolated"

    summary: dict[str, Any] = {
        "method": "interp",
        "donor": str(donor_dir),
        "recipient": str(recipient_dir),
        "alpha": alpha,
        "dtype": dtype,
    }
    with Weights(donor_dir) as donor, Weights(recipient_dir) as recipient:
        return _write_model(recipient, recipient_dir, out, produce, summary, max_shard_bytes)


# --------------------------------------------------------------------------- stage and CLI

METHODS: dict[str, Callable[..., dict[str, Any]]] = {
    "uv": uv_merge,
    "reset": layer_reset,
    "interp": interpolate,
}
# Keys the workflow puts into params to describe the two models (not how to operate on them).
ROLE_KEYS = ("donor", "recipient")
# Config spellings accepted for uv_merge's arguments.
ALIASES = {"top": "k_top", "tail": "k_tail"}
# Arguments that only tune I/O or hardware: not stage params.
_NOT_PARAMS = ("donor_dir", "recipient_dir", "out_dir", "max_shard_bytes", "device")


def method_kwargs(params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split stage params into the method name and that function's keyword arguments."""
    params = {k: v for k, v in params.items() if k not in ROLE_KEYS}
    method = params.pop("method", None)
    if method not in METHODS:
        raise ValueError(f"surgery: params.method must be one of {list(METHODS)}, got {method!r}")
    kwargs = {ALIASES.get(k, k) if method == "uv" else k: v for k, v in params.items()}
    accepted = set(inspect.signature(METHODS[method]).parameters) - set(_NOT_PARAMS)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(f"surgery {method}: unknown params {unknown}; known: {sorted(accepted)}")
    return method, kwargs


def run(spec: dict[str, Any]) -> None:
    """Stage entry point (docs/architecture.md, "Job spec").

    ``spec["inputs"]``: ``donor`` and ``recipient`` model directories. ``spec["params"]``:
    ``method`` ("uv", "reset", "interp") and that method's arguments (uv: k_top or top, k_tail
    or tail, values, modules, dtype; reset: layers, embeddings, lm_head, norms, biases; interp:
    alpha, dtype). Writes ``model/`` into the artifact.
    """
    from sftrl import store

    method, kwargs = method_kwargs(dict(spec["params"]))
    with store.open_artifact(spec) as art:
        summary = METHODS[method](
            spec["inputs"]["donor"], spec["inputs"]["recipient"], art.path / "model", **kwargs
        )
        art.summary.update(
            {k: v for k, v in summary.items() if k not in ("matrices", "modified", "actions")}
        )
        art.summary["actions"] = summary["actions"]


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``surgery uv|reset|interp --donor A --recipient B --out C ...``.

    Each method's handler is stored as both ``func`` and ``handler`` defaults; it returns an
    exit status.
    """
    parser = subparsers.add_parser(
        "surgery",
        help="UV merge, layer reset or interpolation of two models",
        description="Write a new HF model directory from a donor and a recipient model.",
    )
    methods = parser.add_subparsers(dest="method", metavar="METHOD", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--donor", required=True, help="donor model directory (B)")
        sub.add_argument("--recipient", required=True, help="recipient model directory (T)")
        sub.add_argument("--out", required=True, type=Path, help="new model directory")
        sub.set_defaults(func=_cli_surgery, handler=_cli_surgery)

    uv = methods.add_parser("uv", help="replace top/tail singular directions by the donor's")
    common(uv)
    uv.add_argument("--k-top", type=parse_k, required=True, help="count or fraction of rank")
    uv.add_argument("--k-tail", type=parse_k, default=0, help="count or fraction (default 0)")
    uv.add_argument("--values", choices=("recipient", "donor"), default="recipient")
    uv.add_argument("--modules", nargs="+", default=None, help="regex/substring filters")
    uv.add_argument("--dtype", choices=COMPUTE_DTYPES, default="float32")
    uv.add_argument("--device", default="auto")

    reset = methods.add_parser("reset", help="copy whole decoder layers from the donor")
    common(reset)
    reset.add_argument("--layers", required=True, help='"0-3", "0,2,5-7", "first_quarter"')
    for switch in ("embeddings", "lm-head", "norms", "biases"):
        reset.add_argument(f"--{switch}", action="store_true", help=f"also copy {switch}")

    interp = methods.add_parser("interp", help="(1 - alpha) recipient + alpha donor")
    common(interp)
    interp.add_argument("--alpha", type=float, required=True)
    interp.add_argument("--dtype", choices=COMPUTE_DTYPES, default="float32")
    return parser


def _cli_surgery(args: argparse.Namespace) -> int:
    paths = (args.donor, args.recipient, args.out)
    if args.method == "uv":
        summary = uv_merge(
            *paths,
            k_top=args.k_top,
            k_tail=args.k_tail,
            values=args.values,
            modules=args.modules,
            dtype=args.dtype,
            device=args.device,
        )
    elif args.method == "reset":
        summary = layer_reset(
            *paths,
            layers=args.layers,
            embeddings=args.embeddings,
            lm_head=args.lm_head,
            norms=args.norms,
            biases=args.biases,
        )
    else:
        summary = interpolate(*paths, alpha=args.alpha, dtype=args.dtype)
    print(
        f"{args.method}: {summary['tensors_modified']} of {summary['tensors_total']} tensors "
        f"modified ({summary['actions']}); wrote {args.out}"
    )
    return 0


def main(argv: Iterable[str] | None = None) -> int:
    """``python -m sftrl.surgery uv|reset|interp ...`` (the same as ``sftrl surgery``)."""
    parser = argparse.ArgumentParser(prog="sftrl")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["surgery", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
