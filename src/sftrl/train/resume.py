"""Resume a training job after preemption, a time limit or a crash, from its last in-job checkpoint.

A training stage writes its artifact into the job's resumable work dir
(`store.resumable_dir`: one per artifact id, kept when the job dies). In-job checkpoints live in
its `_resume/` sub-directory, one `checkpoint-<step>/` each, written by the engine's own API
(the HF Trainer's for SFT, GRPO and RL->SFT; accelerate's `save_state` for PPO; `torch.save`
for the one-process pre-training) and completed by `sftrl_state.json`, written last:
{"step", "total", "files": {path: bytes}}, the size of every artifact file at that step.

A rerun of the same job takes the newest complete checkpoint, cuts the artifact's files back to
those sizes (logs only grow; files made after the checkpoint go) and continues with the next
step, so its artifact is the one an uninterrupted run writes (bit-identical weights on CPU,
tests/test_resume.py). Nothing of `_resume/` reaches the published artifact.

When: every `every_steps` optimizer steps and every `every_minutes` (config `checkpointing`,
passed in the job spec, out of every id: where checkpoints fall changes no result), and when
the job gets SIGTERM or SIGUSR1 (SLURM's warning before the time limit, `--signal`): then the
job saves at the next step boundary and exits with `EXIT_PREEMPTED`, for SLURM's requeue or
snakemake's retry (or the next `snakemake` run) to resume it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_NAME = "sftrl_state.json"
PREFIX = "checkpoint-"
LOCK_NAME = "lock"
KEEP = 2  # complete checkpoints kept: the newest may be cut short by a kill
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: try again later
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(Exception):
    """The job saved a checkpoint on a stop signal and exits, to be resumed."""


@dataclass(frozen=True)
class CheckpointSettings:
    """Config `checkpointing` (the schema holds the same defaults)."""

    every_steps: int = 0  # 0: by time and on signals only
    every_minutes: float = 30.0  # 0: never by time


def settings(spec: dict) -> CheckpointSettings:
    return CheckpointSettings(**(spec.get("checkpointing") or {}))


# ----------------------------------------------------------------------------- on disk


def file_sizes(work: Path) -> dict[str, int]:
    """Size of every file of the artifact being written (the `_resume/` state left out)."""
    from sftrl.store import RESUME_STATE_DIR

    sizes = {}
    for path in sorted(work.rglob("*")):
        rel = path.relative_to(work)
        if rel.parts[0] != RESUME_STATE_DIR and path.is_file() and not path.is_symlink():
            sizes[rel.as_posix()] = path.stat().st_size
    return sizes


def cut_back(work: Path, sizes: dict[str, int]) -> None:
    """Return the artifact's files to `sizes`: truncate what grew, remove what is new."""
    from sftrl.store import RESUME_STATE_DIR

    current = file_sizes(work)
    missing = [rel for rel in sizes if rel not in current or current[rel] < sizes[rel]]
    if missing:
        raise RuntimeError(f"{work}: files shrank or vanished since the checkpoint: {missing}")
    for rel, size in current.items():
        if rel not in sizes:
            (work / rel).unlink()
        elif size > sizes[rel]:
            os.truncate(work / rel, sizes[rel])
    directories = [p for p in work.rglob("*") if p.is_dir()]
    for directory in sorted(directories, key=lambda p: -len(p.parts)):  # deepest first
        inside_state = directory.relative_to(work).parts[0] == RESUME_STATE_DIR
        if not inside_state and not any(directory.iterdir()):
            directory.rmdir()


def complete_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint whose state file was written, oldest first."""
    found = []
    if directory.is_dir():
        for path in directory.glob(f"{PREFIX}*"):
            if (path / STATE_NAME).is_file() and path.name[len(PREFIX) :].isdigit():
                found.append((int(path.name[len(PREFIX) :]), path))
    return sorted(found)


def describe(directory: Path) -> tuple[bool, str]:
    """(held by a running job, a one-line progress note) for `sftrl ls` and `sftrl gc`."""
    running = _locked(directory / LOCK_NAME)
    done = complete_checkpoints(directory)
    if not done:
        progress = "no checkpoint yet"
    else:
        state = json.loads((done[-1][1] / STATE_NAME).read_text())
        total = state.get("total")
        progress = f"checkpoint at step {state['step']}" + (f"/{total}" if total else "")
    return running, f"partial, {progress}, {'running' if running else 'resumable'}"


def _locked(path: Path) -> bool:
    if not path.exists():
        return False
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def leave_warning_signal_to_jobs() -> None:
    """In snakemake's own process (the Snakefile calls it): ignore SIGUSR1.

    SLURM's `--signal=USR1@T` goes to every process of the job step: the job-side snakemake
    too, which Python's default action would kill, and the step with it, before the training
    job below finished its checkpoint. An ignored signal stays ignored in child processes; the
    training job installs its own handler (`Checkpointer`), every other job keeps ignoring it."""
    try:
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    except ValueError:  # not the main thread (snakemake's API from a thread): nothing to do
        pass


# ----------------------------------------------------------------------------- the job's side


def _all_ranks_any(*flags: bool) -> list[bool]:
    """Each flag True on every process if it is True on any (one decision per step for all
    ranks), in one all-reduce."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return list(flags)
    value = torch.tensor([1.0 if flag else 0.0 for flag in flags])
    if dist.get_backend() == "nccl":
        value = value.cuda()
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return [bool(v) for v in value.tolist()]


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


@dataclass
class Checkpointer:
    """In-job checkpoints of one job. Every process holds one (`directory` is shared); only
    the main process (`work` not None) writes state files and cuts the artifact back.

    The training loop asks `due(step)` after every optimizer step (collective: one answer for
    all ranks), then saves its state into `path(step)` and calls `commit(step)`; it calls
    `stop_if_requested()` after a checkpoint, and resumes from `restore()` before its first step.
    """

    directory: Path
    work: Path | None
    every: CheckpointSettings = field(default_factory=CheckpointSettings)
    total: int | None = None

    def __post_init__(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        self._last = time.monotonic()
        self._signalled: int | None = None
        self.stopping = False
        self.restored: tuple[int, Path | None] | None = None
        for sig in STOP_SIGNALS:  # before the lock file exists: its presence means "handled"
            try:
                signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread: no handlers (tests calling directly)
                break
        self._lock = open(self.directory / LOCK_NAME, "a")  # noqa: SIM115 (held for the job)
        if self.work is not None:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise RuntimeError(
                    f"{self.directory.parent}: another process is running this job"
                ) from exc

    def _on_signal(self, signum, frame) -> None:
        self._signalled = signum
        print(
            f"sftrl: got {signal.Signals(signum).name}: checkpoint at the next step, then exit",
            flush=True,
        )

    def restore(self) -> tuple[int, Path | None]:
        """(step, checkpoint dir) to continue from, (0, None) for a fresh start. Cuts the
        artifact back to that checkpoint (main process) and drops later, unfinished ones.
        Call it before the job writes anything; later calls return the same answer."""
        if self.restored is not None:
            return self.restored
        done = complete_checkpoints(self.directory)
        if self.work is not None:
            keep = {path for _, path in done[-1:]}
            for path in self.directory.glob(f"{PREFIX}*"):
                if path not in keep:
                    shutil.rmtree(path, ignore_errors=True)
            # back to the checkpoint's files, or to none on a start over
            state = json.loads((done[-1][1] / STATE_NAME).read_text()) if done else {"files": {}}
            cut_back(self.work, state["files"])
        _barrier()
        self.restored = done[-1] if done else (0, None)
        if done:
            print(f"sftrl: resuming from the checkpoint at step {done[-1][0]}", flush=True)
        return self.restored

    def path(self, step: int) -> Path:
        return self.directory / f"{PREFIX}{step}"

    def due(self, step: int) -> bool:
        """Whether to checkpoint after `step` (the same answer on every process)."""
        by_steps = self.every.every_steps > 0 and step % self.every.every_steps == 0
        minutes = self.every.every_minutes
        by_time = minutes > 0 and time.monotonic() - self._last >= 60 * minutes
        self.stopping, scheduled = _all_ranks_any(self._signalled is not None, by_steps or by_time)
        return self.stopping or scheduled

    def commit(self, step: int) -> None:
        """Mark `path(step)` complete (after every process wrote its part) and prune."""
        from sftrl.train.common import flush_curves

        flush_curves()  # event files end on a whole record at the sizes recorded below
        _barrier()
        if self.work is not None:
            state = {"step": step, "total": self.total, "files": file_sizes(self.work)}
            tmp = self.path(step) / f".{STATE_NAME}.tmp"
            tmp.write_text(json.dumps(state, sort_keys=True))
            os.replace(tmp, self.path(step) / STATE_NAME)
            for _, old in complete_checkpoints(self.directory)[:-KEEP]:
                shutil.rmtree(old, ignore_errors=True)
        _barrier()
        self._last = time.monotonic()

    def stop_if_requested(self) -> None:
        if self.stopping:
            raise Preempted(f"stopped on a signal after a checkpoint in {self.directory}")


def checkpointer(spec: dict, work: Path | None) -> Checkpointer:
    """The job's checkpointer: `_resume/` of its resumable work dir, settings from the spec."""
    from sftrl.store import RESUME_STATE_DIR, resumable_dir

    directory = resumable_dir(spec["root"], spec["stage"], spec["id"]) / RESUME_STATE_DIR
    return Checkpointer(directory, work, settings(spec))


# ----------------------------------------------------------------------------- HF Trainer


def trainer_arguments(ckpt: Checkpointer | None, scratch: str) -> dict[str, Any]:
    """`TrainingArguments` fields: the Trainer writes its checkpoints into `_resume/` when our
    callback asks (`should_save`); `Checkpointer.commit` prunes them (it knows which are
    complete)."""
    return {"output_dir": str(ckpt.directory) if ckpt else scratch, "save_strategy": "no"}


def trainer_callback(ckpt: Checkpointer, aligned: Callable[[int], bool] = lambda step: True):
    """A TrainerCallback that asks the Trainer for a checkpoint when `ckpt.due(step)` at a step
    where its state is whole (`aligned`: GRPO's generation buffers), stops training after one
    on a signal, and marks each saved checkpoint complete."""
    from transformers import TrainerCallback

    class ResumeCheckpoints(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            step = state.global_step
            if step < state.max_steps and aligned(step) and ckpt.due(step):
                control.should_save = True
                control.should_training_stop = ckpt.stopping

        def on_save(self, args, state, control, **kwargs):
            ckpt.commit(state.global_step)

    return ResumeCheckpoints()


def latest_trainer_checkpoint(ckpt: Checkpointer | None) -> str | None:
    """`resume_from_checkpoint` for `Trainer.train`: the restored checkpoint, or None."""
    if ckpt is None:
        return None
    _, path = ckpt.restore()
    return str(path) if path is not None else None


def finish_trainer(ckpt: Checkpointer | None) -> None:
    """After `Trainer.train` returned: raise `Preempted` if it stopped on a signal."""
    if ckpt is not None:
        ckpt.stop_if_requested()


def skip(iterator: Iterable, n: int) -> None:
    """Advance a stream by `n` items (a resumed job's hands or batches)."""
    it = iter(iterator)
    for _ in range(n):
        next(it)
