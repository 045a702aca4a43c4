"""Weight surgery between two checkpoints (docs/science.md section 7): one module per method
(``uv``, ``reset``, ``interp``, ...), each declaring its ``METHOD`` for the registry
(``sftrl.surgery.registry``); ``common`` holds what they share. This module is the stage entry
point and the ``sftrl surgery <method>`` command line, both built from the registry.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sftrl.surgery.registry import Method, method_kwargs, methods

__all__ = ["Method", "add_cli", "main", "method_kwargs", "methods", "run"]


def run(spec: dict[str, Any]) -> None:
    """Stage entry point (docs/architecture.md, "Job spec").

    ``spec["inputs"]``: ``donor`` and ``recipient`` model directories. ``spec["params"]``:
    ``method`` (a registered name) and that method's config keys. Writes ``model/`` into the
    artifact; the manifest's summary records the actions and, per matrix where the method
    reports it, the effective counts.
    """
    from sftrl import store

    name, kwargs = method_kwargs(dict(spec["params"]))
    with store.open_artifact(spec) as art:
        summary = methods()[name].function(
            spec["inputs"]["donor"], spec["inputs"]["recipient"], art.path / "model", **kwargs
        )
        art.summary.update({k: v for k, v in summary.items() if k != "modified"})


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``surgery <method> --donor A --recipient B --out C ...``, one sub-command per
    registered method, its options from the method's parameters.

    The handler is stored as both ``func`` and ``handler`` defaults; it returns an exit status.
    """
    parser = subparsers.add_parser(
        "surgery",
        help="weight surgery of two models: " + ", ".join(methods()),
        description="Write a new HF model directory from a donor and a recipient model.",
    )
    subs = parser.add_subparsers(dest="method", metavar="METHOD", required=True)
    for method in methods().values():
        sub = subs.add_parser(method.name, help=method.help)
        sub.add_argument("--donor", required=True, help="donor model directory (B)")
        sub.add_argument("--recipient", required=True, help="recipient model directory (T)")
        sub.add_argument("--out", required=True, type=Path, help="new model directory")
        for param in method.params:
            sub.add_argument(param.flag, dest=param.kwarg, **param.cli)
        sub.set_defaults(func=_cli_surgery, handler=_cli_surgery)
    return parser


def _cli_surgery(args: argparse.Namespace) -> int:
    method = methods()[args.method]
    kwargs = {p.kwarg: getattr(args, p.kwarg) for p in method.params}
    summary = method.function(args.donor, args.recipient, args.out, **kwargs)
    print(
        f"{args.method}: {summary['tensors_modified']} of {summary['tensors_total']} tensors "
        f"modified ({summary['actions']}); wrote {args.out}"
    )
    return 0


def main(argv: Iterable[str] | None = None) -> int:
    """``python -m sftrl.surgery <method> ...`` (the same as ``sftrl surgery``)."""
    parser = argparse.ArgumentParser(prog="sftrl")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["surgery", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))
