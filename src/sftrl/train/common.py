"""Plumbing every training stage shares (SFT, PPO, GRPO/RLOO, RL -> SFT, pre-training).

- job specs: `load_spec` (inline JSON or a file), the `--spec` command line;
- processes: `process_rank`, `is_main_process` (the environment `accelerate launch` sets, so
  they answer before any Accelerator exists);
- the stage's parameters: `stage_params` builds a stage's frozen dataclass from its validated
  params (the schema fills every default; the dataclass defaults only serve direct calls and
  the drift test keeps them equal to the schema);
- data: `read_rows` of a parquet split;
- metric logging: `append_jsonl` (`read_jsonl` reads back), one JSON line per record (main
  process only); each numeric field of a record with a `step` is also a TensorBoard scalar
  `<file stem>/<field>` in the artifact's `tensorboard/` (and, opt-in, a W&B scalar:
  `start_trackers`); `Progress`, a plain line per interval for SLURM log files;
- artifacts: `with_artifact` runs a stage body on every process and writes the artifact (and
  its manifest) once, on the main process; a training stage's is resumable (`train.resume`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

P = TypeVar("P")

TENSORBOARD_DIR = "tensorboard"  # event files inside each training artifact
PROGRESS_SECONDS = 30.0  # between two progress lines of a job log


def load_spec(text_or_path: str) -> dict[str, Any]:
    """A spec given inline as JSON, or as the path of a JSON file."""
    text = text_or_path.strip()
    if not text.startswith("{"):
        text = Path(text).read_text()
    return json.loads(text)


def process_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return process_rank() == 0


def defaults(cls: type) -> dict[str, Any]:
    """A params dataclass's defaults as a plain dict (the stage's `DEFAULT_PARAMS`)."""
    return dataclasses.asdict(cls())


def stage_params(cls: type[P], params: Mapping[str, Any] | P | None) -> P:
    """The frozen dataclass `cls` from a params dict (keys it does not declare, such as the
    plan's `start` or `model`, are the plan's and stay out); an instance passes through."""
    if isinstance(params, cls):
        return params
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in (params or {}).items() if k in names})


def read_rows(
    path: str | Path, columns: Sequence[str] | None = None, limit: int | None = None
) -> list[dict]:
    """Rows of a parquet split as dicts (list-valued cells become Python lists)."""
    import pandas as pd

    frame = pd.read_parquet(path, columns=list(columns) if columns else None)
    if limit is not None:
        frame = frame.iloc[:limit]
    rows = frame.to_dict("records")
    for row in rows:
        for key, value in row.items():
            if hasattr(value, "tolist"):
                row[key] = value.tolist()
    return rows


def append_jsonl(path: str | Path | None, record: dict) -> None:
    """Append one JSON line (no-op when path is None, e.g. on non-main processes); its numeric
    fields also go to TensorBoard when the record has an integer `step`."""
    if path is None:
        return
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
    _add_scalars(Path(path), record)


def read_jsonl(path: str | Path | None) -> list[dict]:
    """The records of a JSONL log ([] when there is none): the tables read them, and a resumed
    job its history up to its checkpoint."""
    if path is None or not Path(path).is_file():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


_WRITERS: dict[Path, Any] = {}  # one TensorBoard writer per artifact directory
_TRACKER_RUNS: list[Any] = []  # opt-in trackers of the job (config logging.report_to)


def start_trackers(spec: dict) -> None:
    """The job's runs of the opt-in trackers (main process): W&B offline unless WANDB_MODE
    says otherwise, one run per artifact id, so a resumed job continues its run."""
    settings = spec.get("logging") or {}
    if "wandb" not in settings.get("report_to", ()):
        return
    import wandb

    os.environ.setdefault("WANDB_MODE", "offline")  # offline-safe: `wandb sync` later
    directory = Path(settings.get("dir", "logs"))
    directory.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=settings.get("project", "sftrl"),
        id=spec["id"],
        name=f"{spec['stage']}-{spec['id'][:8]}",
        group=spec["stage"],
        resume="allow",
        dir=str(directory),
        config={"params": spec["params"], "parents": spec["parents"]},
    )
    _TRACKER_RUNS.append(run)


def _add_scalars(path: Path, record: dict) -> None:
    step = record.get("step")
    if not isinstance(step, int) or isinstance(step, bool):
        return
    writer = _WRITERS.get(path.parent)
    if writer is None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(path.parent / TENSORBOARD_DIR), flush_secs=30)
        _WRITERS[path.parent] = writer
    scalars = {
        f"{path.stem}/{key}": value
        for key, value in record.items()
        if key != "step"
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    }
    for tag, value in scalars.items():
        writer.add_scalar(tag, value, step)
    for run in _TRACKER_RUNS:
        run.log(scalars, step=step)


def flush_curves(close: bool = False) -> None:
    """Write out buffered TensorBoard events (before a checkpoint and before the manifest);
    `close` also ends the trackers' runs."""
    for directory, writer in list(_WRITERS.items()):
        writer.flush()
        if close:
            writer.close()
            del _WRITERS[directory]
    while close and _TRACKER_RUNS:
        _TRACKER_RUNS.pop().finish()


class Progress:
    """Plain progress lines on stderr, one per `every` seconds and at the first and last step:
    readable in a SLURM log file (no redrawn bar). Main process only."""

    def __init__(self, label: str, total: int, every: float = PROGRESS_SECONDS):
        self.label, self.total, self.every = label, total, every
        self.start = self.last = time.monotonic()
        self.first_step: int | None = None

    def __call__(self, step: int, **fields: Any) -> None:
        if not is_main_process():
            return
        now = time.monotonic()
        if self.first_step is None:
            self.first_step = step - 1  # a resumed run starts later
        if step not in (self.first_step + 1, self.total) and now - self.last < self.every:
            return
        self.last = now
        rate = (step - self.first_step) / max(now - self.start, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        shown = " ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in fields.items()
            if v is not None
        )
        print(
            f"{self.label}: step {step}/{self.total} ({100 * step / self.total:.0f}%) {shown} "
            f"| {rate:.3g} steps/s, {time.monotonic() - self.start:.0f} s, eta {eta:.0f} s",
            file=sys.stderr,
            flush=True,
        )


def with_artifact(spec: dict, body: Callable[[Path | None], dict], *, resumable=False) -> None:
    """Run `body(out_dir)` on every process; the main process runs it inside
    `store.open_artifact(spec)` (its return value goes into the manifest summary), the others
    get out_dir=None and write nothing. One artifact and one manifest per job. A `resumable`
    job's out_dir is the same on every rerun (`sftrl.train.resume`)."""
    if not is_main_process():
        body(None)
        return
    from sftrl.store import open_artifact

    with open_artifact(spec, resumable=resumable) as art:
        start_trackers(spec)
        summary = body(Path(art.path))
        flush_curves(close=True)  # every event on disk before the manifest hashes the files
        art.summary.update(summary)
