"""SLURM: the user-facing profile `slurm/` and a real single-node cluster on loopback.

The profile checks run everywhere (no cluster). The `slurm`-marked tests bring up
munged + slurmctld + slurmd (tests/slurm_cluster.py; needs root, installs the Debian
packages if missing) and run a tiny two-rule workflow through
`snakemake --profile slurm` exactly as users do, plus the local-cluster overlay
profiles/slurm-test (fast polling, kept job logs). Without root/apt they skip; with
CI=true they fail instead.

    .venv/bin/python -m pytest tests/test_slurm.py -v -rs           # everything
    .venv/bin/python -m pytest tests/test_slurm.py -m "not slurm"   # profile checks only
"""

from __future__ import annotations

import dataclasses
import re
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from slurm_cluster import (  # noqa: F401  (slurm_cluster_fixture: fixture `slurm_cluster`)
    GPU_PARTITION,
    GPU_TYPE,
    N_GPUS,
    NOGPU_PARTITION,
    REPO,
    SLURM_PROFILE,
    TEST_PROFILE,
    SlurmCluster,
    run_bounded,
    slurm_cluster_fixture,
)

PROFILE_FILE = SLURM_PROFILE / "config.v9+.yaml"
OVERLAY_FILE = TEST_PROFILE / "config.v9+.yaml"

# What the overlay may change: polling, log keeping, retries, waiting. Anything else
# (default-resources above all) would hide what users actually run.
OVERLAY_ALLOWED = {
    "slurm-init-seconds-before-status-checks",
    "seconds-between-status-checks",
    "max-status-checks-per-second",
    "slurm-keep-successful-logs",
    "retries",
    "latency-wait",
}

# Two rules: a CPU job that reports which Python it sees, a GPU job that reports the GPUs
# SLURM gave it. `all` is a local rule.
TINY_SNAKEFILE = textwrap.dedent(
    """\
    localrules: all

    rule all:
        input:
            "cpu.txt",
            "gpu.txt",

    rule cpu_job:
        output:
            "cpu.txt",
        resources:
            mem_mb=500,
            runtime=5,
        shell:
            "echo job=$SLURM_JOB_ID > {output}; "
            "python -c 'import sys; print(\\"prefix=\\" + sys.prefix)' >> {output}"

    rule gpu_job:
        output:
            "gpu.txt",
        resources:
            gpu=1,
            mem_mb=500,
            runtime=5,
        shell:
            "echo job=$SLURM_JOB_ID > {output}; "
            "echo cuda=${{CUDA_VISIBLE_DEVICES:-unset}} >> {output}"
    """
)


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def _fields(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().split() if "=" in line)


def _write_tiny_workflow(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Snakefile").write_text(TINY_SNAKEFILE)
    return folder


# ----------------------------------------------------------------- profile (no cluster)
def test_slurm_profile_settings():
    prof = _load(PROFILE_FILE)
    assert prof["executor"] == "slurm"
    # squeue: no hang on clusters without an accounting database
    assert prof["slurm-status-command"] == "squeue"
    for key in ("jobs", "latency-wait", "retries", "default-resources"):
        assert key in prof, key
    defaults = prof["default-resources"]
    assert {"runtime", "mem_mb"} <= set(defaults)
    # a global `tasks` becomes --ntasks-per-gpu (one copy of the script per GPU);
    # a global `gpu_model` makes every job a GPU job; account/partition are the user's
    for bad in ("tasks", "gpu", "gpu_model", "slurm_account", "slurm_partition"):
        assert bad not in defaults, f"default-resources must not set {bad!r}"
    # the site settings are documented, commented, in this one file
    text = PROFILE_FILE.read_text()
    for knob in ("# slurm_partition:", "# slurm_account:", "gpu_model:"):
        assert knob in text, knob


def test_profile_slurm_resolves_from_the_repository_root(monkeypatch):
    """`snakemake --profile slurm` run in the repository root finds slurm/config.v9+.yaml."""
    from snakemake.cli import get_profile_dir

    monkeypatch.chdir(REPO)
    found = get_profile_dir("slurm")
    assert found is not None
    assert found[1].resolve() == PROFILE_FILE.resolve(), found


def test_slurm_profile_keys_belong_to_the_installed_plugin():
    from snakemake_executor_plugin_slurm import ExecutorSettings

    known = {f.name.replace("_", "-") for f in dataclasses.fields(ExecutorSettings)}
    for path in (PROFILE_FILE, OVERLAY_FILE):
        for key in _load(path):
            if key.startswith("slurm-"):
                assert key.removeprefix("slurm-") in known, f"{path}: unknown plugin key {key}"


def test_overlay_only_tunes_polling_and_logs():
    extra = set(_load(OVERLAY_FILE)) - OVERLAY_ALLOWED
    assert not extra, f"profiles/slurm-test must not override {sorted(extra)}"


def test_workflow_profile_keeps_slurm_profile_intact():
    """profiles/default/ is always loaded and replaces whole top-level keys."""
    folder = REPO / "profiles" / "default"
    files = [p for p in folder.glob("*.yaml") if p.name.startswith(("config", "profile"))]
    if not files:
        pytest.skip("no profiles/default/ yet")
    slurm_keys = set(_load(PROFILE_FILE)) | {"set-resources", "default-resources", "executor"}
    for path in files:
        prof = _load(path)
        clash = sorted(set(prof) & slurm_keys)
        assert not clash, (
            f"{path.relative_to(REPO)} sets {clash}: with --profile slurm these would replace "
            "the slurm profile's values (see docs/cluster.md)"
        )
        # --cores also caps every job's threads (sbatch --cpus-per-task) under SLURM, while
        # the job-side snakemake still uses up to the node's cores: keep it at `all`
        assert prof.get("cores", "all") == "all", (
            f"{path.relative_to(REPO)}: `cores: {prof['cores']}` caps the threads of every "
            "SLURM job at that number; use `cores: all` (see docs/cluster.md)"
        )


def _dry_run(wf: Path, *profiles: Path, timeout: float = 120):
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(wf)}
    args = [sys.executable, "-m", "snakemake"]
    for prof in profiles:
        args += ["--profile", str(prof)]
    return run_bounded([*args, "-n"], cwd=wf, env=env, timeout=timeout)


def test_profile_is_accepted_by_snakemake(tmp_path):
    """Every key is a valid option (snakemake rejects unknown ones); dry run, no cluster."""
    wf = _write_tiny_workflow(tmp_path / "wf")
    res = _dry_run(wf, SLURM_PROFILE, TEST_PROFILE)
    assert res.returncode == 0, res.describe()
    assert "gpu_job" in res.output and "cpu_job" in res.output


def test_documented_site_settings_work_when_uncommented(tmp_path):
    """Uncomment the site block of slurm/ (as docs/cluster.md says) and check it applies."""
    lines = PROFILE_FILE.read_text().splitlines()
    out, in_set_resources = [], False
    for line in lines:
        if line.startswith("  # slurm_partition:") or line.startswith("  # slurm_account:"):
            line = "  " + line[4:]
        elif line.startswith("# set-resources:"):
            line, in_set_resources = line[2:], True
        elif in_set_resources and line.startswith("#   "):
            line = line[2:]
        else:
            in_set_resources = False
        out.append(line)
    text = "\n".join(out) + "\n"
    # the tiny workflow's GPU rule stands in for the real GPU rules
    text = text.replace("  sft:", "  gpu_job:", 1)
    prof = yaml.safe_load(text)
    assert (
        prof["default-resources"]["slurm_partition"] and prof["default-resources"]["slurm_account"]
    )
    assert prof["set-resources"]["gpu_job"]["gpu_model"]
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "config.v9+.yaml").write_text(text)
    wf = _write_tiny_workflow(tmp_path / "wf")
    res = _dry_run(wf, folder, TEST_PROFILE)
    assert res.returncode == 0, res.describe()
    model = prof["set-resources"]["gpu_job"]["gpu_model"]
    assert f"gpu_model={model}" in res.output, res.describe()
    assert f"slurm_account={prof['default-resources']['slurm_account']}" in res.output


# ------------------------------------------------------------------- real SLURM cluster
@pytest.mark.slurm
def test_cluster_is_up(slurm_cluster: SlurmCluster):
    c = slurm_cluster
    assert re.match(r"slurm(-wlm)? \d+\.\d+", c.version), c.version
    sinfo = c.run("sinfo", "-h", "-N", "-p", GPU_PARTITION, "-o", "%N|%T|%G", check=True)
    node, state, gres = sinfo.stdout.strip().split("|")
    assert node == c.host and state.startswith(("idle", "mixed")), sinfo.stdout
    assert gres.startswith(f"gpu:{GPU_TYPE}:{N_GPUS}"), gres
    config = c.run("scontrol", "show", "config", check=True).stdout
    assert re.search(r"MinJobAge\s*=\s*300", config)  # squeue status needs finished jobs
    print(f"\nslurm bring-up: {c.version}; timings (s since start): {c.timings}")


@pytest.mark.slurm
def test_workflow_runs_through_slurm(slurm_cluster: SlurmCluster, tmp_path):
    c = slurm_cluster
    wf = _write_tiny_workflow(tmp_path / "wf")
    # The GPU model is a site setting: set from outside the rules, as users do in slurm/.
    res = c.snakemake("--set-resources", f"gpu_job:gpu_model={GPU_TYPE}", cwd=wf, timeout=240)
    assert res.returncode == 0, res.describe() + "\n" + c.logs()
    print(f"\ntwo-job workflow through SLURM: {res.seconds:.1f} s")

    cpu, gpu = _fields(wf / "cpu.txt"), _fields(wf / "gpu.txt")
    # jobs were SLURM jobs: one plugin log per job, named by the SLURM job id
    for rule, out in (("cpu_job", cpu), ("gpu_job", gpu)):
        assert out["job"].isdigit(), out
        log = wf / ".snakemake" / "slurm_logs" / f"rule_{rule}" / f"{out['job']}.log"
        assert log.is_file(), sorted(map(str, (wf / ".snakemake").rglob("*.log")))
        job = c.run("scontrol", "show", "job", out["job"], check=True).stdout
        assert "JobState=COMPLETED" in job, job
        assert f"Partition={GPU_PARTITION}" in job, job
    assert cpu["job"] != gpu["job"]
    # the job-side snakemake and the rule's `python` are the venv's
    assert Path(cpu["prefix"]).resolve() == Path(sys.prefix).resolve(), cpu
    # the GPU job got a GPU of the requested model, and sees it
    job = c.run("scontrol", "show", "job", gpu["job"], check=True).stdout
    assert f"gpu:{GPU_TYPE}:1" in job, job
    assert re.fullmatch(r"\d+(,\d+)*", gpu["cuda"]), gpu
    cpu_job = c.run("scontrol", "show", "job", cpu["job"], check=True).stdout
    assert "TresPerJob=gres:gpu" not in cpu_job, cpu_job  # a CPU rule stays a CPU job


@pytest.mark.slurm
def test_gpu_request_without_gres_fails_fast(slurm_cluster: SlurmCluster, tmp_path):
    c = slurm_cluster
    rejected = "Requested node configuration is not available"
    # sbatch itself: rejected at submission, not queued forever
    t0 = time.monotonic()
    p = c.run("sbatch", "-p", NOGPU_PARTITION, "--gpus=1", "--wrap", "true", timeout=30)
    assert p.returncode != 0 and rejected in p.stderr, (p.returncode, p.stdout, p.stderr)
    assert time.monotonic() - t0 < 10

    # through snakemake: the job fails with sbatch's message and snakemake exits
    wf = _write_tiny_workflow(tmp_path / "wf")
    res = c.snakemake(
        "--set-resources",
        f"gpu_job:slurm_partition={NOGPU_PARTITION}",
        "--",
        "gpu.txt",
        cwd=wf,
        timeout=180,
    )
    assert not res.timed_out, res.describe()
    assert res.returncode != 0, res.describe()
    assert "SLURM sbatch failed" in res.output and rejected in res.output, res.describe()
    assert res.seconds < 90, res.describe()
    assert not (wf / "gpu.txt").exists()
    queued = c.run("squeue", "-h", "-t", "PD,R", "-p", NOGPU_PARTITION, "-o", "%i").stdout
    assert not queued.strip(), f"left in the queue: {queued}"
    print(f"\nGPU request on a partition without GRES failed in {res.seconds:.1f} s")
