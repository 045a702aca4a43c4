"""The ``sftrl`` command line: browse and check the content-addressed result store.

    sftrl ls [--root results] [--stage S]      table of artifacts (incomplete ones marked)
    sftrl show ID [--root results] [--json]    one manifest; ID may be a unique prefix
    sftrl verify [PATH|ID ...] [--root results] re-hash; exit 1 if anything is wrong
    sftrl gc [--root results] [--keep ID ...] [--keep-file F] [--yes]

Adding a subcommand: write ``_add_<name>(parser)`` (declare arguments) and
``_run_<name>(args) -> int`` (exit status), then append ``Command(name, help, _add_<name>,
_run_<name>)`` to ``COMMANDS``. Import heavy modules (torch, transformers, sftrl.spectrum, ...)
inside the handler, never at module level: ``sftrl ls`` must start fast. Raise ``CommandError``
for a user-facing failure (printed as ``sftrl: error: ...``, exit status 1).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sftrl import store

DEFAULT_ROOT = "results"
PARAMS_WIDTH = 48
SHORT_ID = 8


class CommandError(Exception):
    """A user-facing error: printed as ``sftrl: error: <message>``, exit status 1."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


# --------------------------------------------------------------------------- helpers


def _add_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root", default=DEFAULT_ROOT, help=f"result store root (default: {DEFAULT_ROOT})"
    )


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _short_id(value: Any) -> str:
    """Artifact ids are shortened to 8 chars; anything else (e.g. "hf:<model>") is kept."""
    text = str(value)
    is_id = len(text) == store.ID_LENGTH and all(c in "0123456789abcdef" for c in text)
    return text[:SHORT_ID] if is_id else text


def _format_parents(parents: dict[str, Any]) -> str:
    return ",".join(f"{name}={_short_id(pid)}" for name, pid in sorted(parents.items()))


def _table(header: Sequence[str], rows: list[Sequence[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return lines


def _resolve(root: str, token: str) -> dict[str, Any]:
    """The complete artifact whose id starts with ``token`` (or ``stage/prefix``)."""
    stage, _, prefix = token.rpartition("/")
    entries = [e for e in store.list_artifacts(root) if not stage or e["stage"] == stage]
    matches = [e for e in entries if e["id"].startswith(prefix)]
    complete = [e for e in matches if e["status"] == "complete"]
    if len(complete) == 1:
        return complete[0]
    if len(complete) > 1:
        names = ", ".join(f"{e['stage']}/{e['id']}" for e in complete)
        raise CommandError(f"{token!r} is ambiguous under {root}: {names}")
    if matches:
        notes = "; ".join(f"{e['path']} ({e['note']})" for e in matches)
        raise CommandError(f"{token!r} is incomplete: {notes}")
    raise CommandError(f"no artifact {token!r} under {root}")


# --------------------------------------------------------------------------- ls


def _add_ls(parser: argparse.ArgumentParser) -> None:
    _add_root(parser)
    parser.add_argument("--stage", help="only this stage")


def _run_ls(args: argparse.Namespace) -> int:
    entries = store.list_artifacts(args.root)
    if args.stage:
        entries = [e for e in entries if e["stage"] == args.stage]
    if not entries:
        print(f"no artifacts under {args.root}")
        return 0
    rows = []
    for e in entries:
        status = "complete" if e["status"] == "complete" else f"INCOMPLETE ({e['note']})"
        params = _shorten(e["key_params"], PARAMS_WIDTH) or "-"
        rows.append([e["stage"], e["id"], params, _format_parents(e["parents"]) or "-", status])
    for line in _table(["STAGE", "ID", "PARAMS", "PARENTS", "STATUS"], rows):
        print(line)
    incomplete = sum(e["status"] != "complete" for e in entries)
    print(f"{len(entries)} artifacts, {incomplete} incomplete")
    return 0


# --------------------------------------------------------------------------- show


def _add_show(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="ID", help="artifact id, a unique prefix, or stage/prefix")
    _add_root(parser)
    parser.add_argument("--json", action="store_true", help="print the raw manifest JSON")


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _run_show(args: argparse.Namespace) -> int:
    entry = _resolve(args.root, args.id)
    manifest = store.read_manifest(entry["path"])
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False))
        return 0
    scalars = ("stage", "id", "created", "host", "seed", "seconds")
    for key in scalars:
        print(f"{key:<12}{manifest.get(key)}")
    print(f"{'path':<12}{entry['path']}")
    print(f"{'parents':<12}{_format_parents(manifest.get('parents') or {}) or '-'}")
    for key in ("params", "inputs", "summary", "fingerprint"):
        text = json.dumps(manifest.get(key), indent=2, sort_keys=True, ensure_ascii=False)
        print(f"{key}:")
        print("\n".join("  " + line for line in text.splitlines()))
    files = manifest.get("files") or {}
    total = sum(int(f.get("bytes", 0)) for f in files.values())
    print(f"files: {len(files)}, {_human_bytes(total)}")
    for rel, info in sorted(files.items()):
        print(f"  {str(info.get('sha256'))[:16]}  {info.get('bytes'):>12}  {rel}")
    return 0


# --------------------------------------------------------------------------- verify


def _add_verify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="artifact directories or ids (default: every complete artifact under --root)",
    )
    _add_root(parser)


def _run_verify(args: argparse.Namespace) -> int:
    checked: list[tuple[str, Path | None, list[str]]] = []  # (label, artifact dir, problems)
    if args.paths:
        for token in args.paths:
            if Path(token).exists():
                path = Path(token)
                if path.name == store.MANIFEST_NAME:
                    path = path.parent
                checked.append((f"{path.parent.name}/{path.name}", path, _verify_dir(path)))
                continue
            try:
                entry = _resolve(args.root, token)
            except CommandError as exc:
                checked.append((token, None, [str(exc)]))
            else:
                path = Path(entry["path"])
                checked.append((f"{entry['stage']}/{entry['id']}", path, _verify_dir(path)))
    else:
        # the whole store: missing manifests, stray directories and symlinks fail too
        checked = [
            (label, Path(args.root) / label, problems)
            for label, problems in store.verify_store(args.root)
        ]
        if not checked:
            print(f"no artifacts under {args.root}")
            return 0

    failed = 0
    for label, path, problems in checked:
        if problems:
            failed += 1
            print(f"FAILED  {label}")
            for problem in problems:
                print(f"  - {problem}")
        else:
            assert path is not None
            count = len(store.read_manifest(path).get("files") or {})
            print(f"OK      {label}  ({count} files)")
    print(f"{len(checked)} checked, {len(checked) - failed} OK, {failed} FAILED")
    return 1 if failed else 0


def _verify_dir(path: Path) -> list[str]:
    return store.verify(path) if path.is_dir() else [f"{path}: not an artifact directory"]


# --------------------------------------------------------------------------- gc


def _add_gc(parser: argparse.ArgumentParser) -> None:
    _add_root(parser)
    parser.add_argument(
        "--keep",
        nargs="+",
        action="extend",
        default=[],
        metavar="ID",
        help="artifacts to keep (unique id prefixes); their ancestors are kept too",
    )
    parser.add_argument(
        "--keep-file",
        action="append",
        default=[],
        metavar="FILE",
        help="file of full ids to keep (whitespace separated, '#' comments)",
    )
    parser.add_argument(
        "--stale-hours",
        type=float,
        default=6.0,
        help="temp dirs of dead jobs untouched this long are removed (default: 6)",
    )
    parser.add_argument("--yes", action="store_true", help="really delete (default: dry run)")


def _read_keep_file(path: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read keep file: {exc}") from exc
    return [tok for line in text.splitlines() for tok in line.split("#", 1)[0].split()]


def _run_gc(args: argparse.Namespace) -> int:
    explicit = bool(args.keep or args.keep_file)
    if explicit:
        keep = {_resolve(args.root, token)["id"] for token in args.keep}
        for path in args.keep_file:
            keep.update(_read_keep_file(path))
    else:
        # Nothing named: keep every complete artifact, clean only incomplete and stale dirs.
        keep = {e["id"] for e in store.list_artifacts(args.root) if e["status"] == "complete"}
    doomed = store.gc(args.root, keep, dry_run=not args.yes, stale_after=args.stale_hours * 3600)
    if not doomed:
        print(f"nothing to remove under {args.root}")
        return 0
    verb = "removed" if args.yes else "would remove"
    for e in doomed:
        print(f"{verb}  {e['path']}  ({e['reason']})")
    if not args.yes:
        print(f"dry run: {len(doomed)} to remove; pass --yes to delete")
    return 0


# --------------------------------------------------------------------------- main


def _add_summary(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--file", default=f"{DEFAULT_ROOT}/summary.md", help="the summary the workflow wrote"
    )


def _run_summary(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CommandError(f"{path} does not exist: run `snakemake` (or `make run`) first")
    print(path.read_text(encoding="utf-8"), end="")
    return 0


def _add_plan(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--configfile",
        nargs="*",
        default=[],
        help="config layers on top of config.yaml, as for snakemake --configfile",
    )
    parser.add_argument(
        "--find",
        metavar="LABEL",
        help="print the manifests of the artifact labelled LABEL and of its evaluation "
        "(e.g. 'uv top=0.2'), for `snakemake -f $(sftrl plan --find ...)`",
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="estimated per-GPU memory of every training and evaluation job against its "
        "resources.<stage>.gpu_mem_gb; exit 1 if any job does not fit",
    )


def _run_plan(args: argparse.Namespace) -> int:
    from sftrl.config import DEFAULT_CONFIG, ConfigError, load_config
    from sftrl.plan import Plan

    try:
        config = load_config(DEFAULT_CONFIG, *args.configfile)
        plan = Plan(config, check_memory=not args.memory)
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc
    if args.memory:
        return _print_memory_plan(plan)
    if args.find:
        found = [a for a in plan.artifacts.values() if a.label == args.find]
        if not found:
            labels = sorted({a.label for a in plan.artifacts.values()})
            raise CommandError(f"no artifact labelled {args.find!r}; labels: {labels}")
        art = found[0]
        paths = [art.manifest]
        if art.id in plan.evals:
            paths.append(plan.evals[art.id].manifest)
        print(" ".join(paths))
        return 0
    for art in plan.artifacts.values():
        done = "done" if Path(art.manifest).is_file() else "to do"
        print(f"{art.stage:<9} {art.id}  {done:<6} {art.label}")
    return 0


def _print_memory_plan(plan) -> int:
    from sftrl import memory

    estimates = memory.memory_plan(plan)
    arch = memory.architecture(plan.config["model"])
    dist = plan.config["distributed"]
    engine = dist["engine"]
    if engine == "deepspeed":
        offload = [
            k.removeprefix("offload_") for k in ("offload_optimizer", "offload_params") if dist[k]
        ]
        engine += f" ZeRO-{dist['zero_stage']}" + (
            f", {'+'.join(offload)} offload" if offload else ""
        )
    print(
        f"model {arch.name}: {arch.n_params / 1e9:.3f} B parameters, {arch.layers} layers "
        f"(text), hidden {arch.hidden}; engine {engine}, mixed precision "
        f"{dist['mixed_precision']}, activation checkpointing {dist['activation_checkpointing']}"
    )
    print("estimated peak memory per GPU, GB (1 GB = 1e9 bytes):")
    for line in memory.format_table(estimates):
        print(line)
    over = [e for e in estimates if e.over]
    if over:
        print(memory.refusal(over), file=sys.stderr)
        return 1
    return 0


COMMANDS: list[Command] = [
    Command("ls", "list artifacts in the result store", _add_ls, _run_ls),
    Command("show", "show one artifact's manifest", _add_show, _run_show),
    Command("verify", "re-hash artifacts against their manifests", _add_verify, _run_verify),
    Command("gc", "remove unkept artifacts and stale temp dirs", _add_gc, _run_gc),
    Command("summary", "print the key numbers of the last run", _add_summary, _run_summary),
    Command("plan", "list the artifacts a config plans, and where", _add_plan, _run_plan),
]

# Analysis commands register their own parsers (they live beside the code they run).
ANALYSIS_MODULES = ("sftrl.spectrum", "sftrl.surgery")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sftrl", description="Browse and check the sftrl result store."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(handler=command.handler)
    for module in ANALYSIS_MODULES:
        importlib.import_module(module).add_cli(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error (argparse prints the message)
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.handler(args))
    except CommandError as exc:
        print(f"sftrl: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
