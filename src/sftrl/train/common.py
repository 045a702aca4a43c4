"""Plumbing every training stage shares (SFT, PPO, GRPO/RLOO, RL -> SFT, pre-training).

- job specs: `load_spec` (inline JSON or a file), the `--spec` command line;
- processes: `process_rank`, `is_main_process` (the environment `accelerate launch` sets, so
  they answer before any Accelerator exists);
- the stage's parameters: `stage_params` builds a stage's frozen dataclass from its validated
  params (the schema fills every default; the dataclass defaults only serve direct calls and
  the drift test keeps them equal to the schema);
- data: `read_rows` of a parquet split;
- metric logging: `append_jsonl`, one JSON line per record (main process only);
- artifacts: `with_artifact` runs a stage body on every process and writes the artifact (and
  its manifest) once, on the main process.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

P = TypeVar("P")


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
    """Append one JSON line (no-op when path is None, e.g. on non-main processes)."""
    if path is None:
        return
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def with_artifact(spec: dict, body: Callable[[Path | None], dict]) -> None:
    """Run `body(out_dir)` on every process; the main process runs it inside
    `store.open_artifact(spec)` (its return value goes into the manifest summary), the others
    get out_dir=None and write nothing. One artifact and one manifest per job."""
    if not is_main_process():
        body(None)
        return
    from sftrl.store import open_artifact

    with open_artifact(spec) as art:
        art.summary.update(body(Path(art.path)))
