"""End to end: the micro config through the real Snakefile, every stage, into a temp directory.

One session-scoped run is shared by the assertions below (and by the SLURM test, which
compares its content addresses with this local run).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MICRO = ROOT / "configs" / "micro.yaml"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    # --configfile last: it takes several values and would swallow targets that follow it
    cmd = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "-d", str(workdir), *args]
    cmd += ["--configfile", str(MICRO)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Rule -> job count of a dry run (empty when there is nothing to do)."""
    # `--quiet rules` last: its nargs="*" would swallow targets that follow it
    out = snakemake(workdir, "-n", *args, "--quiet", "rules").stdout
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("job", "total"):
            counts[parts[0]] = int(parts[1])
    return counts


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("micro")
    snakemake(workdir)
    return workdir


def test_every_planned_artifact_is_complete_and_verifies(micro_run):
    proc = subprocess.run(
        [str(BIN / "sftrl"), "verify", "--root", str(micro_run / "results")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stages = {p.parent.parent.name for p in (micro_run / "results").glob("*/*/manifest.json")}
    assert {"data", "pretrain", "sft", "eval", "rl", "rlsft", "spectrum", "surgery"} <= stages
    assert not list((micro_run / "results").glob("*/.tmp-*")), "temp dirs left behind"


def test_models_load_with_from_pretrained(micro_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sft = next((micro_run / "results" / "sft").glob("*/manifest.json")).parent
    epoch_dirs = sorted(sft.glob("epoch-*"))
    assert epoch_dirs
    model = AutoModelForCausalLM.from_pretrained(epoch_dirs[-1])
    tokenizer = AutoTokenizer.from_pretrained(epoch_dirs[-1])
    assert model.config.tie_word_embeddings is False
    assert tokenizer("Cards : 7 , Q")["input_ids"]


def test_second_run_has_nothing_to_do(micro_run):
    assert planned_jobs(micro_run) == {}


def test_deleted_figure_reruns_only_its_plot(micro_run):
    figure = micro_run / "results" / "figures" / "recovery.pdf"
    assert figure.read_bytes().startswith(b"%PDF")
    sidecar = json.loads(figure.with_suffix(".json").read_text())
    assert sidecar["artifacts"]
    figure.unlink()
    assert planned_jobs(micro_run, "results/figures/recovery.pdf") == {"figure": 1}
    snakemake(micro_run, "results/figures/recovery.pdf")
    assert figure.exists()


def test_plot_setting_change_reruns_only_plots(micro_run):
    theme = "figures={'theme': {'context': 'talk', 'style': 'ticks', 'font_scale': 1.2}}"
    jobs = planned_jobs(micro_run, "--config", theme)
    assert jobs and set(jobs) <= {"figure", "all"}, jobs


def find(label: str, *configs: str) -> list[str]:
    """`sftrl plan --find`: the manifest paths of the artifacts labelled `label`."""
    out = subprocess.run(
        [str(BIN / "sftrl"), "plan", "--configfile", str(MICRO), *configs, "--find", label],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [path for path in out if path.startswith("results/")]


@pytest.mark.slurm
def test_slurm_run_gives_the_local_content_addresses(micro_run, slurm_cluster, tmp_path):
    """Every job kind through `--profile slurm` on a real local cluster (the evaluated RL runs
    and an RL -> SFT run: data, pre-training, SFT, RL, RL -> SFT, evaluation): the same ids as
    the local run. The rest of the DAG is analysis on one CPU, as locally."""
    labels = ("eval ppo from epoch-2 seed 0", "eval grpo from epoch-2 seed 0")
    labels += ("eval sft after ppo from epoch-2 seed 0",)
    targets = [path for label in labels for path in find(label)]
    done = slurm_cluster.snakemake(
        "-s", str(ROOT / "Snakefile"), "--configfile", str(MICRO), "--", *targets,
        cwd=tmp_path, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0 and not done.timed_out, done.describe()

    def artifact_paths(workdir: Path) -> set[str]:
        results = workdir / "results"
        return {str(p.parent.relative_to(results)) for p in results.glob("*/*/manifest.json")}

    built = artifact_paths(tmp_path)
    assert {str(Path(t).parent.relative_to("results")) for t in targets} <= built
    assert built <= artifact_paths(micro_run)
    # the training jobs really went through SLURM (localrules run beside snakemake)
    submitted = {p.name for p in (tmp_path / ".snakemake" / "slurm_logs").glob("rule_*")}
    jobs = ("data", "pretrain", "sft", "rl", "rlsft", "eval")
    assert {f"rule_{job}" for job in jobs} <= submitted


@pytest.mark.slurm
def test_slurm_warning_signal_checkpoints_and_the_retry_resumes(slurm_cluster, tmp_path):
    """SLURM's warning signal (USR1 to the job step, as `--signal=USR1@T` sends it) makes the
    pre-training job checkpoint and exit 75 (snakemake's own process in the step ignores it);
    snakemake's retry resumes it in a new SLURM job and publishes the weights of an
    uninterrupted local run."""
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("pretrain: {steps: 100}\ncheckpointing: {every_minutes: 0}\n")
    configs = ["--configfile", str(MICRO), str(overlay)]
    (target,) = [path for path in find("base", str(overlay)) if "/pretrain/" in path]
    art_id = Path(target).parent.name
    work, local = tmp_path / "slurm", tmp_path / "local"
    work.mkdir()
    argv = [sys.executable, "-m", "snakemake", *slurm_cluster.profile_args, "--retries", "1"]
    argv += ["-s", str(ROOT / "Snakefile"), *configs, "--", target]
    proc = subprocess.Popen(
        argv, cwd=work, env=slurm_cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    steps_log = work / "results" / "pretrain" / f".tmp-{art_id}-resume" / "train_log.jsonl"
    deadline = time.monotonic() + 300
    while not steps_log.is_file() or len(steps_log.read_text().splitlines()) < 5:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()
        time.sleep(0.1)
    running = slurm_cluster.run("squeue", "-h", "-t", "R", "-o", "%i").stdout.split()
    slurm_cluster.run("scancel", "--signal=USR1", *running, check=True)
    output = proc.communicate(timeout=600)[0].decode()
    assert proc.returncode == 0, output[-4000:] + slurm_cluster.logs()

    attempts = sorted((work / ".snakemake" / "slurm_logs" / "rule_pretrain").rglob("*.log"))
    texts = [path.read_text(errors="replace") for path in attempts]
    assert len(texts) == 2 and "returned non-zero exit status 75" in texts[0], texts
    job_log = (work / "logs" / "pretrain" / f"{art_id}.log").read_text()
    assert "resuming from the checkpoint at step" in job_log
    local.mkdir()
    subprocess.run(
        [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "-c2", *configs, "--", target],
        cwd=local,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
        capture_output=True,
        check=True,
    )

    def weights(root: Path) -> bytes:
        return (root / Path(target).parent / "model" / "model.safetensors").read_bytes()

    assert weights(work) == weights(local)


def test_single_ablation_reruns_alone(micro_run):
    """The documented one-liner: `snakemake -f $(sftrl plan --find LABEL)`."""
    found = subprocess.run(
        [str(BIN / "sftrl"), "plan", "--configfile", str(MICRO), "--find", "uv top=0.5"],
        cwd=micro_run,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(found) == 2
    assert planned_jobs(micro_run, "-f", *found) == {"surgery": 1, "eval": 1}


def test_report_embeds_every_figure(micro_run):
    from sftrl.plan import FIGURES

    snakemake(micro_run, "--report", "results/report.html")
    html = (micro_run / "results" / "report.html").read_text(errors="replace")
    for name in FIGURES:
        assert f"{name}.pdf" in html, name
