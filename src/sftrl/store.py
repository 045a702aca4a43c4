"""Content-addressed result store: ids, code fingerprint, atomic artifact writer, verify.

Every artifact lives under ``<root>/<stage>/<id>/`` where ``<id>`` is the first 16 hex chars of
the SHA-256 of a canonical JSON of ``{"stage", "params", "parents", "fingerprint"}``. A stage
writes into a temporary directory ``<root>/<stage>/.tmp-<id>-<pid>-<random>``; on success a
``manifest.json`` (with the SHA-256 of every file) is written last and the temporary directory
is renamed to its final name. Anything without a manifest is incomplete by construction.
A training job writes into ``.tmp-<id>-resume`` instead (``resumable=True``): one name per
artifact id, kept when the job dies, so that a rerun continues from the in-job checkpoint under
its ``_resume/`` (``sftrl.train.resume``); that sub-directory never reaches the artifact.

See docs/architecture.md ("Store", "Job spec") for the contract.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import json
import logging
import math
import os
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
ID_LENGTH = 16
TEMP_PREFIX = ".tmp-"
RESUMABLE_SUFFIX = "-resume"  # .tmp-<id>-resume: the work dir a rerun of the job continues
RESUME_STATE_DIR = "_resume"  # in-job checkpoints inside it (sftrl.train.resume)
CHUNK_SIZE = 1 << 20  # 1 MiB

# Top-level names that are not artifact content: the manifest itself, and the flag file that
# Snakemake writes into directory() outputs when it touches them (`snakemake --touch`).
UNTRACKED_NAMES = frozenset({MANIFEST_NAME, ".snakemake_timestamp"})

# Library versions that can change what a stage computes.
FINGERPRINT_PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "datasets",
    "tokenizers",
    "safetensors",
    "numpy",
    "accelerate",
)

# Presentation code (modules and packages of the sftrl package, the single list of them):
# left out of every id, so editing a table, a plot or the CLI never re-trains a model. The
# tables stage and the figure rules carry a hash of their own code instead
# (`presentation_hash`), so they alone rerun when it changes.
PRESENTATION_FILES = frozenset({"figures", "cli.py", "tables.py"})
PRESENTATION_PREFIX = "report"  # sftrl/report.py, sftrl/report/..., sftrl/reports/...
# Plan-time checks decide whether a job may start, never what it computes: out of every id too.
PLAN_CHECK_FILES = frozenset({"memory.py"})

SPEC_KEYS = ("stage", "id", "params", "parents", "inputs", "root")

# The manifest's hash of its own other fields: an edited summary (read by downstream stages,
# e.g. the data stage's held-out multisets) is caught like an edited file.
INTEGRITY_KEY = "manifest_sha256"


# --------------------------------------------------------------------------- canonical JSON


def _normalize(obj: Any, where: str) -> Any:
    """Return a JSON-ready copy of ``obj``: tuples become lists, non-finite floats rejected."""
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(
                f"canonical_json: non-finite float {obj!r} at {where}; NaN and Inf are not "
                "allowed in ids or manifests"
            )
        return obj
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"canonical_json: key {key!r} at {where} is not a string")
            out[key] = _normalize(value, f"{where}.{key}")
        return out
    if isinstance(obj, (list, tuple)):
        return [_normalize(value, f"{where}[{i}]") for i, value in enumerate(obj)]
    raise TypeError(f"canonical_json: unsupported type {type(obj).__name__} at {where}")


def canonical_json(obj: Any) -> str:
    """Canonical JSON text: sorted keys, no whitespace, UTF-8 (not ASCII-escaped).

    Floats use Python's shortest round-trip ``repr``, tuples are written as lists, NaN and
    infinities raise ``ValueError``, non-string keys and other types raise ``TypeError``.
    """
    return json.dumps(
        _normalize(obj, "$"),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


# --------------------------------------------------------------------------- fingerprint

_FINGERPRINT_CACHE: dict[str, Any] | None = None


def _is_presentation(rel: Path) -> bool:
    if rel.as_posix() in PLAN_CHECK_FILES:
        return True
    return rel.parts[0] in PRESENTATION_FILES or rel.parts[0].startswith(PRESENTATION_PREFIX)


def presentation_hash(name: str) -> str:
    """Short SHA-256 of one presentation module's source (``"tables.py"``), or of a package's
    ``*.py`` files (``"figures"``), by relative path and bytes."""
    path = Path(__file__).parent / name
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*.py")):
        digest.update(file.relative_to(path).as_posix().encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()[:16]


def code_hash(package_dir: Path) -> str:
    """SHA-256 over the sorted (relative path, bytes) of the non-presentation ``*.py`` files."""
    files = sorted(
        (path.relative_to(package_dir), path)
        for path in package_dir.rglob("*.py")
        if path.is_file() and not _is_presentation(path.relative_to(package_dir))
    )
    digest = hashlib.sha256()
    for rel, path in files:
        data = path.read_bytes()
        # Length-prefixed fields keep the encoding unambiguous.
        digest.update(rel.as_posix().encode("utf-8") + b"\0")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def code_fingerprint() -> dict[str, Any]:
    """Fingerprint of the code an artifact is computed with (cached per process).

    ``{"code": sha256 of sftrl sources except presentation modules, "packages": {name:
    version or None}, "python": "major.minor"}``.
    """
    global _FINGERPRINT_CACHE
    if _FINGERPRINT_CACHE is None:
        _FINGERPRINT_CACHE = {
            "code": code_hash(Path(__file__).resolve().parent),
            "packages": {name: _package_version(name) for name in FINGERPRINT_PACKAGES},
            "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        }
    return copy.deepcopy(_FINGERPRINT_CACHE)


# --------------------------------------------------------------------------- ids and paths


def artifact_id(
    stage: str,
    params: Mapping[str, Any],
    parents: Mapping[str, str],
    fingerprint: Mapping[str, Any] | None = None,
) -> str:
    """First 16 hex chars of sha256(canonical_json(stage, params, parents, fingerprint)).

    ``fingerprint=None`` uses this process's ``code_fingerprint()``.
    """
    if fingerprint is None:
        fingerprint = code_fingerprint()
    payload = {"stage": stage, "params": params, "parents": parents, "fingerprint": fingerprint}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()[:ID_LENGTH]


def _check_name(kind: str, name: str) -> None:
    if not name or name.startswith(".") or "/" in name or "\\" in name or name in ("..", "."):
        raise ValueError(f"invalid {kind} {name!r}: must be a plain, non-hidden directory name")


def artifact_dir(root: str | os.PathLike[str], stage: str, id: str) -> Path:
    """``<root>/<stage>/<id>``."""
    _check_name("stage", stage)
    _check_name("id", id)
    return Path(root) / stage / id


# --------------------------------------------------------------------------- writing


def resumable_dir(root: str | os.PathLike[str], stage: str, id: str) -> Path:
    """The work dir of a resumable job: the same for every process and every rerun of it."""
    return artifact_dir(root, stage, id).parent / f"{TEMP_PREFIX}{id}{RESUMABLE_SUFFIX}"


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _hash_file(path: Path, fsync: bool = False) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
        if fsync:
            os.fsync(handle.fileno())
    return {"sha256": digest.hexdigest(), "bytes": size}


def _content_files(directory: Path) -> list[str]:
    """Sorted relative POSIX paths of every file under ``directory`` except untracked names."""
    found = []
    for path in directory.rglob("*"):
        if path.is_dir():
            continue
        rel = path.relative_to(directory).as_posix()
        if rel not in UNTRACKED_NAMES:
            found.append(rel)
    return sorted(found)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _jsonable_summary(obj: Any, where: str = "summary") -> Any:
    """Make a stage summary JSON-safe: numpy/torch scalars via ``.item()``, NaN/Inf as strings.

    A diverged training run (loss NaN) must still publish its artifact, so non-finite floats
    are kept as the strings "NaN", "Infinity", "-Infinity" instead of raising.
    """
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):
        if math.isnan(obj):
            return "NaN"
        if math.isinf(obj):
            return "Infinity" if obj > 0 else "-Infinity"
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, Mapping):
        return {str(k): _jsonable_summary(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable_summary(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    item = getattr(obj, "item", None)
    if callable(item):
        return _jsonable_summary(item(), where)
    raise TypeError(f"{where}: cannot store {type(obj).__name__} in manifest.json")


def _jsonable_inputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in inputs.items()}


@dataclass
class Artifact:
    """Handle yielded by ``open_artifact``: write files into ``path``, fill ``summary``."""

    path: Path
    spec: dict[str, Any]
    final_path: Path
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.spec["id"])

    @property
    def stage(self) -> str:
        return str(self.spec["stage"])


def _check_spec(spec: Mapping[str, Any]) -> None:
    missing = [key for key in SPEC_KEYS if key not in spec]
    if missing:
        raise ValueError(f"job spec is missing {missing}; expected keys {list(SPEC_KEYS)}")
    _check_name("stage", spec["stage"])
    _check_name("id", spec["id"])


@contextmanager
def open_artifact(spec: Mapping[str, Any], *, resumable: bool = False) -> Iterator[Artifact]:
    """Write an artifact atomically. See the module docstring and docs/architecture.md.

    Raises ``ValueError`` naming both ids if ``spec["id"]`` is not the id this library computes
    for (stage, params, parents, code fingerprint). On success the artifact is at
    ``artifact_dir(root, stage, id)`` with ``manifest.json`` written last; on any exception
    inside the block the temporary directory is removed and the exception re-raised, except a
    ``resumable`` one (``resumable_dir``), which stays for the rerun to continue.
    """
    _check_spec(spec)
    stage, expected = spec["stage"], spec["id"]
    fingerprint = code_fingerprint()
    computed = artifact_id(stage, spec["params"], spec["parents"], fingerprint)
    if computed != expected:
        raise ValueError(
            f"artifact id mismatch for stage {stage!r}: the workflow passed {expected} but "
            f"sftrl computes {computed} from the same stage, params and parents; the workflow "
            "and the installed sftrl code, package versions or param defaults disagree"
        )
    root = Path(spec["root"])
    final = artifact_dir(root, stage, expected)
    final.parent.mkdir(parents=True, exist_ok=True)
    if resumable:
        tmp = resumable_dir(root, stage, expected)
        tmp.mkdir(exist_ok=True)
    else:
        tmp = final.parent / f"{TEMP_PREFIX}{expected}-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()
    art = Artifact(path=tmp, spec=dict(spec), final_path=final)
    started_wall, started = _utc_now(), time.monotonic()
    try:
        yield art
        shutil.rmtree(tmp / RESUME_STATE_DIR, ignore_errors=True)  # in-job state, not content
        manifest_fields = {
            "stage": stage,
            "id": expected,
            "params": json.loads(canonical_json(spec["params"])),
            "parents": json.loads(canonical_json(spec["parents"])),
            "inputs": _jsonable_inputs(spec["inputs"]),
            "fingerprint": fingerprint,
            "seed": spec["params"].get("seed"),
            "host": socket.gethostname(),
            "started": started_wall,
            "summary": _jsonable_summary(art.summary),
        }
        _finalize(tmp, manifest_fields, time.monotonic() - started)
        _publish(tmp, final, expected)
    except BaseException:
        if not resumable:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _finalize(tmp: Path, fields: dict[str, Any], seconds: float) -> None:
    """Hash + fsync every file, then write manifest.json last and fsync the directories."""
    if (tmp / MANIFEST_NAME).exists():
        raise ValueError(f"{MANIFEST_NAME} is reserved for the store; the stage wrote its own")
    files = {rel: _hash_file(tmp / rel, fsync=True) for rel in _content_files(tmp)}
    finished = _utc_now()
    manifest = {
        **fields,
        "created": finished,
        "finished": finished,
        "seconds": round(seconds, 3),
        "files": files,
    }
    manifest[INTEGRITY_KEY] = manifest_hash(manifest)
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    with (tmp / MANIFEST_NAME).open("w", encoding="utf-8") as handle:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    subdirs = sorted((p for p in tmp.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
    for directory in [*subdirs, tmp]:
        _fsync_dir(directory)


def _publish(tmp: Path, final: Path, id: str) -> None:
    """Rename the finished temp dir to ``final``.

    Snakemake pre-creates directory() outputs, so ``final`` usually exists and is empty:
    rename(2) replaces an empty target directory atomically (POSIX), which is exactly what we
    want. If ``final`` is not empty (ENOTEMPTY/EEXIST), another run got there first: keep its
    artifact if it verifies and discard ours; if it does not verify, move it aside (as a temp
    dir, so it never looks complete) and retry.
    """
    for _ in range(3):
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        else:
            _fsync_dir(final.parent)
            return
        problems = verify(final)
        if not problems:
            log.warning("%s already holds a verified artifact; discarding this run's copy", final)
            shutil.rmtree(tmp, ignore_errors=True)
            return
        log.warning("replacing broken %s (%s)", final, "; ".join(problems))
        aside = final.parent / f"{TEMP_PREFIX}{id}-{os.getpid()}-replaced{secrets.token_hex(4)}"
        try:
            os.rename(final, aside)
        except FileNotFoundError:
            continue
        shutil.rmtree(aside, ignore_errors=True)
    raise RuntimeError(f"could not publish {tmp} to {final}: it keeps being replaced")


# --------------------------------------------------------------------------- reading


def _manifest_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path if path.name == MANIFEST_NAME else path / MANIFEST_NAME


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load ``manifest.json`` from an artifact dir (or the manifest file itself).

    Raises ``FileNotFoundError`` if absent and ``ValueError`` if it is not a JSON object.
    """
    manifest_file = _manifest_path(path)
    try:
        data = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{manifest_file}: corrupt manifest ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{manifest_file}: corrupt manifest (not a JSON object)")
    return data


def manifest_hash(manifest: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of every manifest field but the hash itself."""
    body = {key: value for key, value in manifest.items() if key != INTEGRITY_KEY}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def _links_and_empty_dirs(directory: Path) -> list[str]:
    """Symlinks anywhere under ``directory`` and directories that hold no file."""
    problems = []
    for current, dirs, names in os.walk(directory):
        here = Path(current)
        for name in sorted(dirs + names):
            if (here / name).is_symlink():
                rel = (here / name).relative_to(directory).as_posix()
                problems.append(f"{rel}: symlink (artifacts hold plain files only)")
        if here != directory and not any(path.is_file() for path in here.rglob("*")):
            problems.append(f"{here.relative_to(directory).as_posix()}/: extra empty directory")
    return problems


def _safe_relpath(rel: str) -> bool:
    parts = Path(rel).parts
    return bool(parts) and not Path(rel).is_absolute() and ".." not in parts


def manifest_problems(manifest: Mapping[str, Any], directory_name: str) -> list[str]:
    """The manifest's own integrity: its hash, its id against its contents and its directory.

    Cheap (no file is re-hashed): a stage can check its parents' manifests before reading them.
    """
    problems: list[str] = []
    try:
        stored = manifest.get(INTEGRITY_KEY)
        if stored is None:
            problems.append(f"{MANIFEST_NAME}: no {INTEGRITY_KEY} (written by an older sftrl?)")
        elif stored != manifest_hash(manifest):
            problems.append(f"{MANIFEST_NAME}: edited (fields do not match its {INTEGRITY_KEY})")
    except (TypeError, ValueError) as exc:
        problems.append(f"{MANIFEST_NAME}: cannot hash ({exc})")
    try:
        recomputed = artifact_id(
            manifest["stage"], manifest["params"], manifest["parents"], manifest["fingerprint"]
        )
    except (KeyError, TypeError, ValueError) as exc:
        problems.append(f"{MANIFEST_NAME}: cannot recompute id ({exc})")
    else:
        if recomputed != manifest.get("id"):
            problems.append(
                f"{MANIFEST_NAME}: edited (id {manifest.get('id')} but its contents hash to "
                f"{recomputed})"
            )
    if manifest.get("id") != directory_name:
        problems.append(
            f"{MANIFEST_NAME}: id {manifest.get('id')} does not match directory {directory_name}"
        )
    return problems


def verify(path: str | os.PathLike[str]) -> list[str]:
    """Re-hash an artifact; return one problem string per altered, missing or extra file.

    Also reports a missing or corrupt manifest, a manifest edited since it was written
    (`manifest_problems`), symlinks and empty directories. ``[]`` means intact.
    """
    manifest_file = _manifest_path(path)
    directory = manifest_file.parent
    try:
        manifest = read_manifest(manifest_file)
    except FileNotFoundError:
        return [f"{MANIFEST_NAME}: missing (incomplete or not an artifact)"]
    except ValueError as exc:
        return [f"{MANIFEST_NAME}: {exc}"]
    files = manifest.get("files")
    if not isinstance(files, dict):
        return [f"{MANIFEST_NAME}: corrupt manifest (no 'files' table)"]

    problems = manifest_problems(manifest, directory.name)
    for rel, expected in sorted(files.items()):
        if not _safe_relpath(rel) or not isinstance(expected, dict):
            problems.append(f"{rel}: invalid entry in {MANIFEST_NAME}")
            continue
        target = directory / rel
        if not target.is_file():
            problems.append(f"{rel}: missing")
            continue
        actual = _hash_file(target)
        if actual["bytes"] != expected.get("bytes"):
            problems.append(
                f"{rel}: altered (size {actual['bytes']} bytes, expected {expected.get('bytes')})"
            )
        elif actual["sha256"] != expected.get("sha256"):
            problems.append(
                f"{rel}: altered (sha256 {actual['sha256'][:12]}…, expected "
                f"{str(expected.get('sha256'))[:12]}…)"
            )
    for rel in _content_files(directory):
        if rel not in files:
            problems.append(f"{rel}: extra file not in {MANIFEST_NAME}")
    return problems + _links_and_empty_dirs(directory)


def _is_artifact_name(name: str) -> bool:
    return len(name) == ID_LENGTH and all(c in "0123456789abcdef" for c in name)


def verify_store(root: str | os.PathLike[str]) -> list[tuple[str, list[str]]]:
    """Verify every artifact under ``root``; report what is neither artifact nor temp dir.

    Returns ``(label, problems)`` pairs: one per artifact directory (``stage/id``; a missing or
    unreadable manifest is a problem), and one per stray entry of a stage directory (a file, a
    directory not named like an id, a symlink) or symlink at the top. Temp dirs of running or
    dead jobs are left to ``gc``. A top-level directory holding no subdirectory (``figures/``)
    is workflow output, not a stage. ``[]`` problems means intact.
    """
    root = Path(root)
    report: list[tuple[str, list[str]]] = []
    if not root.is_dir():
        return report
    for top in sorted(root.iterdir()):
        if top.is_symlink():
            report.append((top.name, [f"{top}: symlink in the store"]))
            continue
        if not top.is_dir() or not any(child.is_dir() for child in top.iterdir()):
            continue
        for path in sorted(top.iterdir()):
            label = f"{top.name}/{path.name}"
            if path.name.startswith(TEMP_PREFIX) and path.is_dir() and not path.is_symlink():
                continue
            if path.is_symlink():
                report.append((label, [f"{path}: symlink in the store"]))
            elif not path.is_dir():
                report.append((label, [f"{path}: extra file in a stage directory"]))
            elif not _is_artifact_name(path.name):
                report.append((label, [f"{path}: extra directory (not an artifact id)"]))
            else:
                report.append((label, verify(path)))
    return report


# --------------------------------------------------------------------------- listing, gc


def key_params(params: Mapping[str, Any]) -> str:
    """A short ``k=v`` string of the top-level scalar params (nested values left out)."""
    parts = []
    for key in sorted(params):
        value = params[key]
        if value is None or isinstance(value, (str, bool, int, float)):
            parts.append(f"{key}={value}")
    return " ".join(parts)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _parse_temp_name(name: str) -> tuple[str, int | None]:
    """``.tmp-<id>-<pid>-<random>`` -> (id, pid or None); ``.tmp-<id>-resume`` -> (id, None)."""
    parts = name[len(TEMP_PREFIX) :].split("-")
    pid = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    return parts[0], pid


def _newest_mtime(directory: Path) -> float:
    newest = directory.stat().st_mtime
    for path in directory.rglob("*"):
        try:
            newest = max(newest, path.lstat().st_mtime)
        except FileNotFoundError:
            pass
    return newest


def list_artifacts(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every artifact dir and temp dir under ``root`` (no re-hashing: that is ``verify``).

    Each entry: stage, id, status ("complete": manifest present and parses; "incomplete":
    temp dir or no/unreadable manifest), kind ("artifact" or "temp"), params, key_params,
    parents, created, path, note (why incomplete; "" when complete).
    """
    root = Path(root)
    if not root.is_dir():
        return []
    entries = []
    for stage_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if stage_dir.name.startswith("."):
            continue
        for path in sorted(p for p in stage_dir.iterdir() if p.is_dir()):
            entry: dict[str, Any] = {
                "stage": stage_dir.name,
                "id": path.name,
                "status": "incomplete",
                "kind": "artifact",
                "params": {},
                "key_params": "",
                "parents": {},
                "created": None,
                "path": str(path),
                "note": "",
            }
            if path.name.endswith(RESUMABLE_SUFFIX) and path.name.startswith(TEMP_PREFIX):
                from sftrl.train.resume import describe

                art_id, _ = _parse_temp_name(path.name)
                running, note = describe(path / RESUME_STATE_DIR)
                entry.update(id=art_id, kind="partial", running=running, note=note)
            elif path.name.startswith(TEMP_PREFIX):
                art_id, pid = _parse_temp_name(path.name)
                running = pid is not None and _pid_alive(pid)
                state = "running here" if running else "not running here"
                entry.update(id=art_id, kind="temp", pid=pid, note=f"temp dir, pid {pid} {state}")
            elif path.name.startswith("."):
                continue
            else:
                try:
                    manifest = read_manifest(path)
                except FileNotFoundError:
                    entry["note"] = "no manifest.json"
                except (ValueError, OSError) as exc:
                    entry["note"] = f"unreadable manifest: {exc}"
                else:
                    params = manifest.get("params")
                    params = params if isinstance(params, dict) else {}
                    entry.update(
                        status="complete",
                        params=params,
                        key_params=key_params(params),
                        parents=manifest.get("parents") or {},
                        created=manifest.get("created"),
                    )
            entries.append(entry)
    entries.sort(key=lambda e: (e["stage"], e["created"] or "", e["id"], e["path"]))
    return entries


def _with_ancestors(entries: list[dict[str, Any]], keep_ids: Iterable[str]) -> set[str]:
    parents_of = {e["id"]: e["parents"] for e in entries if e["status"] == "complete"}
    keep: set[str] = set()
    todo = list(keep_ids)
    while todo:
        current = todo.pop()
        if current in keep:
            continue
        keep.add(current)
        parents = parents_of.get(current) or {}
        todo.extend(str(p) for p in parents.values() if isinstance(p, str))
    return keep


def gc(
    root: str | os.PathLike[str],
    keep_ids: Iterable[str],
    dry_run: bool = True,
    *,
    keep_ancestors: bool = True,
    stale_after: float = 6 * 3600.0,
) -> list[dict[str, Any]]:
    """List (``dry_run``) or remove artifacts not in ``keep_ids`` and stale temp dirs.

    ``keep_ancestors`` also keeps every parent (transitively) of a kept artifact. A temp dir
    is stale when its pid is not running on this host and nothing in it changed for
    ``stale_after`` seconds (the age guard protects jobs running on other cluster nodes); the
    partial state of a resumable job likewise, when no process holds its lock.
    Returns the removed (or removable) entries from ``list_artifacts`` with a "reason".
    """
    entries = list_artifacts(root)
    keep = _with_ancestors(entries, keep_ids) if keep_ancestors else set(keep_ids)
    now = time.time()
    doomed = []
    for entry in entries:
        path = Path(entry["path"])
        if entry["kind"] in ("temp", "partial"):
            pid = entry.get("pid")
            if (pid is not None and _pid_alive(pid)) or entry.get("running"):
                continue
            try:
                age = now - _newest_mtime(path)
            except FileNotFoundError:
                continue
            if age < stale_after:
                continue
            reason = f"stale {entry['kind']} dir ({age / 3600:.1f} h old)"
        elif entry["id"] in keep:
            continue
        elif entry["status"] == "complete":
            reason = "not kept"
        else:
            reason = f"incomplete ({entry['note']})"
        doomed.append({**entry, "reason": reason})
        if not dry_run:
            shutil.rmtree(path, ignore_errors=True)
    return doomed
