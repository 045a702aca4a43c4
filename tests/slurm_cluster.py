"""A real single-node SLURM cluster on loopback, for tests (Debian 12: slurm 22.05, munge).

munged, slurmctld and slurmd are started by hand as root (no systemd). Configuration,
state, logs and the munge socket live in one temporary folder; the only thing written
outside it is the symlink /etc/slurm/slurm.conf (the executor plugin strips SLURM_CONF
before its inner `srun`, so clients inside jobs must find the config at the default
path). The node advertises two fake a100 GPUs (character devices made with mknod), so
`--gpus` requests are scheduled for real and jobs see CUDA_VISIBLE_DEVICES. A second
partition, `nogpu`, has a node without GRES: GPU requests there are rejected at once.

Use from pytest through the `slurm_cluster` fixture (session scope):

    # in tests/conftest.py or a test module; registers the fixture `slurm_cluster`
    from slurm_cluster import slurm_cluster_fixture  # noqa: F401

    def test_x(slurm_cluster, tmp_path):
        res = slurm_cluster.snakemake("--configfile", "configs/micro.yaml", cwd=REPO, timeout=900)
        assert res.returncode == 0, res.describe()
        # or by hand: [sys.executable, "-m", "snakemake", *slurm_cluster.profile_args, ...]
        # with env=slurm_cluster.env

By hand (root):  python tests/slurm_cluster.py up DIR  /  python tests/slurm_cluster.py down DIR
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTALL_SCRIPT = REPO / "scripts" / "slurm-cluster.sh"
SLURM_PROFILE = REPO / "slurm"  # what users run: snakemake --profile slurm
TEST_PROFILE = REPO / "profiles" / "slurm-test"  # local-cluster overlay (fast polling)
ETC_CONF = Path("/etc/slurm/slurm.conf")
DIR_PREFIX = "sftrl-slurm-"  # temp folders of this module; used to recognise stale links

GPU_PARTITION = "gpu"  # default partition, node with Gres=gpu:a100:2
NOGPU_PARTITION = "nogpu"  # node without GRES: GPU requests are rejected at submission
GPU_TYPE = "a100"
N_GPUS = 2
NOGPU_NODE = "nogpu0"

DAEMONS = ("munged", "slurmctld", "slurmd")
NEEDED_BINARIES = (
    "munged",
    "slurmctld",
    "slurmd",
    "sbatch",
    "srun",
    "squeue",
    "scontrol",
    "scancel",
    "sinfo",
)


@dataclass
class Finished:
    """Result of run_bounded: exit code (None on timeout), merged output, seconds."""

    argv: list[str]
    returncode: int | None
    output: str
    seconds: float
    timed_out: bool

    def describe(self, tail: int = 80) -> str:
        lines = self.output.splitlines()[-tail:]
        status = "TIMED OUT" if self.timed_out else f"rc={self.returncode}"
        return f"$ {' '.join(self.argv)}\n[{status} after {self.seconds:.1f} s]\n" + "\n".join(
            lines
        )


def run_bounded(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> Finished:
    """Run a command in its own process group; on timeout SIGINT, then SIGKILL the group."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    timed_out, out = False, ""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        # snakemake cancels its SLURM jobs on SIGINT (takes ~15 s here); SIGKILL after that
        for sig, grace in ((signal.SIGINT, 30), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                out, _ = proc.communicate(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                out = ""
    return Finished(
        argv, None if timed_out else proc.returncode, out or "", time.monotonic() - t0, timed_out
    )


class ClusterError(RuntimeError):
    """Bring-up failed; the message carries the daemon logs."""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _which(name: str) -> str | None:
    return shutil.which(name) or (
        f"/usr/sbin/{name}" if os.access(f"/usr/sbin/{name}", os.X_OK) else None
    )


def missing_binaries() -> list[str]:
    return [b for b in NEEDED_BINARIES if _which(b) is None]


def install_packages(timeout: float = 900) -> str | None:
    """Install slurm + munge through scripts/slurm-cluster.sh if missing.

    Returns None when everything is present, else a reason (for skip/fail messages).
    """
    if not missing_binaries():
        return None
    if os.geteuid() != 0:
        return f"SLURM binaries missing ({', '.join(missing_binaries())}) and not root"
    if shutil.which("apt-get") is None:
        return f"SLURM binaries missing ({', '.join(missing_binaries())}) and no apt-get"
    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", str(INSTALL_SCRIPT), "install"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0 or missing_binaries():
        return (
            f"installing slurm/munge failed after {time.monotonic() - t0:.0f} s "
            f"(rc={proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    sys.stderr.write(proc.stdout)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child counts as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def _stop_pid(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM a daemon by PID, then SIGKILL if it does not go away."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:  # reap if it is our child
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:
                pass
            if not _pid_alive(pid):
                return
            time.sleep(0.05)


def _link_owner() -> tuple[Path, int | None] | None:
    """(cluster folder, owning process id) of our /etc/slurm/slurm.conf link, if any."""
    if not ETC_CONF.is_symlink():
        return None
    folder = Path(os.readlink(ETC_CONF)).parent
    if DIR_PREFIX not in folder.name:
        return None
    try:
        owner = int((folder / "run" / "owner.pid").read_text().strip())
    except (OSError, ValueError):
        owner = None
    return folder, owner


def _clear_stale_link(wait: float = 180.0) -> None:
    """Deal with an /etc/slurm/slurm.conf link left by another session.

    A cluster whose owning process is alive belongs to a concurrent test session: wait
    (bounded) for it to go. One whose owner is dead was left by a killed session: stop its
    daemons by the PIDs recorded in its folder and remove the link. A real file (a machine
    that is a SLURM node) is never touched.
    """
    deadline = time.monotonic() + wait
    while True:
        found = _link_owner()
        if found is None:
            return
        folder, owner = found
        if owner is not None and owner != os.getpid() and _pid_alive(owner):
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"another local test cluster ({folder}, owner pid {owner}) is still up"
                )
            time.sleep(1)
            continue
        for name in DAEMONS:
            try:
                pid = int((folder / "run" / f"{name}.pid").read_text().strip())
            except (OSError, ValueError):
                continue
            if _pid_alive(pid) and _cmdline_mentions(pid, str(folder)):
                _stop_pid(pid)
        ETC_CONF.unlink(missing_ok=True)
        return


def _cmdline_mentions(pid: int, text: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return text.encode() in f.read()
    except OSError:
        return False


@dataclass
class SlurmCluster:
    """One single-node cluster living in `root` (a fresh temp folder)."""

    root: Path
    host: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    linked: bool = False
    stopped: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    # ------------------------------------------------------------------ paths
    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge" / "munge.socket.2"

    @property
    def logdir(self) -> Path:
        return self.root / "log"

    # ------------------------------------------------------------ public API
    @property
    def env(self) -> dict[str, str]:
        """Environment for clients and snakemake: the venv first on PATH, our config."""
        env = dict(os.environ)
        venv_bin = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "/usr/bin:/bin")])
        for var in list(env):  # never inherit an outer allocation or another cluster
            if var.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_")):
                env.pop(var)
        env["SLURM_CONF"] = str(self.conf)
        return env

    @property
    def profile_args(self) -> list[str]:
        """Snakemake CLI args: the user-facing profile plus the local-cluster overlay.

        The overlay only speeds up polling and keeps job logs; default-resources,
        status command etc. come from slurm/ exactly as users get them.
        """
        return ["--profile", str(SLURM_PROFILE), "--profile", str(TEST_PROFILE)]

    def run(
        self, *cmd: str, timeout: float = 30, check: bool = False
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout, check=check
        )

    def snakemake(
        self, *args: str, cwd: Path, timeout: float = 300, profile: bool = True
    ) -> Finished:
        """Run `python -m snakemake [profile_args] ARGS` in `cwd`, bounded by `timeout`.

        On timeout snakemake gets SIGINT (it then scancels its jobs), then SIGKILL; the
        result has timed_out=True instead of hanging the test session.
        """
        argv = [sys.executable, "-m", "snakemake", *(self.profile_args if profile else []), *args]
        return run_bounded(argv, cwd=cwd, env=self.env, timeout=timeout)

    def logs(self, tail: int = 25) -> str:
        """The last lines of each daemon's log (stdout capture only where no log file)."""
        out = []
        for f in sorted(self.logdir.glob("*.log")):
            if (
                f.name.endswith(".stdout.log")
                and (self.logdir / f.name.replace(".stdout", "")).exists()
            ):
                continue  # slurmctld/slurmd -D copy their log file to stdout
            lines = f.read_text(errors="replace").splitlines()
            out.append(f"--- {f} (last {tail} lines) ---")
            out.extend(lines[-tail:])
        return "\n".join(out) or f"(no daemon logs in {self.logdir})"

    # --------------------------------------------------------------- bring-up
    def start(self, timeout: float = 30) -> SlurmCluster:
        t0 = time.monotonic()
        self.version = subprocess.run(
            [_which("slurmctld"), "-V"], capture_output=True, text=True, timeout=30
        ).stdout.strip()  # e.g. "slurm-wlm 22.05.8"
        for d in ("munge", "state/ctld", "state/d", "run", "log", "dev"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        (self.root / "run" / "owner.pid").write_text(f"{os.getpid()}\n")
        os.chmod(self.root / "munge", 0o755)  # clients must reach the socket
        self._write_munge_key()
        self._make_fake_gpus()
        self._write_config()
        _clear_stale_link()
        if ETC_CONF.exists() or ETC_CONF.is_symlink():
            raise ClusterError(f"{ETC_CONF} exists and is not ours; refusing to replace it")
        ETC_CONF.parent.mkdir(parents=True, exist_ok=True)
        ETC_CONF.symlink_to(self.conf)
        self.linked = True
        atexit.register(self.stop)

        self._spawn(
            "munged",
            [
                _which("munged"),
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={self.root / 'munge' / 'munge.key'}",
                f"--pid-file={self.root / 'run' / 'munged.pid'}",
                f"--seed-file={self.root / 'munge' / 'munged.seed'}",
                f"--log-file={self.logdir / 'munged.log'}",
                "--num-threads=2",
            ],
        )
        self._wait(lambda: self.munge_socket.exists(), "munged socket", timeout)
        self.timings["munged"] = time.monotonic() - t0

        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-c", "-i", "-f", str(self.conf)])
        self._wait(self._ctld_up, "slurmctld (scontrol ping)", timeout)
        self.timings["slurmctld"] = time.monotonic() - t0

        self._spawn("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf), "-N", self.host])
        self._wait(self._node_idle, f"node {self.host} idle (sinfo)", timeout)
        self.timings["slurmd"] = time.monotonic() - t0
        return self

    def _write_munge_key(self) -> None:
        key = self.root / "munge" / "munge.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(1024))

    def _make_fake_gpus(self) -> None:
        for i in range(N_GPUS):
            dev = self.root / "dev" / f"nvidia{i}"
            if not dev.exists():
                # character device 1:3 (/dev/null's numbers): SLURM's gres/gpu wants a
                # device file; nothing ever opens it.
                subprocess.run(["mknod", str(dev), "c", "1", "3"], check=True)

    def _node_line(self) -> str:
        out = subprocess.run(
            [_which("slurmd"), "-C"], capture_output=True, text=True, check=True, timeout=30
        ).stdout
        line = next(ln for ln in out.splitlines() if ln.startswith("NodeName="))
        fields = dict(kv.split("=", 1) for kv in line.split())
        real_mb = int(fields.pop("RealMemory"))
        fields["NodeName"] = self.host
        keep = ("NodeName", "CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
        parts = [f"{k}={fields[k]}" for k in keep if k in fields]
        # a little under the detected value: slurmd drains a node that reports less
        parts.append(f"RealMemory={max(256, int(real_mb * 0.9))}")
        self.cpus = int(fields.get("CPUs", "1"))
        self.real_memory = max(256, int(real_mb * 0.9))
        return " ".join(parts)

    def _write_config(self) -> None:
        self.ctld_port, self.slurmd_port = _free_port(), _free_port()
        node = self._node_line()
        r = self.root
        conf = f"""\
# generated by tests/slurm_cluster.py: single node on loopback, throw-away
ClusterName=sftrltest
SlurmctldHost={self.host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
StateSaveLocation={r}/state/ctld
SlurmdSpoolDir={r}/state/d
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
GresTypes=gpu
{node} NodeAddr=127.0.0.1 Gres=gpu:{GPU_TYPE}:{N_GPUS} State=UNKNOWN
NodeName={NOGPU_NODE} NodeAddr=127.0.0.1 CPUs=1 RealMemory=256 State=FUTURE
PartitionName={GPU_PARTITION} Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
PartitionName={NOGPU_PARTITION} Nodes={NOGPU_NODE} MaxTime=INFINITE State=UP
"""
        self.conf.write_text(conf)
        (r / "gres.conf").write_text(
            f"AutoDetect=off\nNodeName={self.host} Name=gpu Type={GPU_TYPE} "
            f"File={r}/dev/nvidia[0-{N_GPUS - 1}]\n"
        )

    def _spawn(self, name: str, argv: list[str]) -> None:
        out = open(self.logdir / f"{name}.stdout.log", "wb")  # noqa: SIM115 (kept open)
        self.procs[name] = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,  # Ctrl-C on pytest must not kill them before teardown
        )
        out.close()
        (self.root / "run" / f"{name}.pid").write_text(f"{self.procs[name].pid}\n")

    def _wait(self, ready, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise ClusterError(
                        f"{name} exited with {p.returncode} while waiting for {what}\n{self.logs()}"
                    )
            try:
                if ready():
                    return
            except (subprocess.TimeoutExpired, OSError):
                pass
            time.sleep(0.1)
        raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")

    def _ctld_up(self) -> bool:
        p = self.run("scontrol", "ping", timeout=10)
        return p.returncode == 0 and "UP" in p.stdout

    def _node_idle(self) -> bool:
        p = self.run("sinfo", "-h", "-N", "-n", self.host, "-o", "%T", timeout=10)
        return p.returncode == 0 and p.stdout.strip().rstrip("*~#") in {"idle", "mixed"}

    # --------------------------------------------------------------- teardown
    def cancel_all(self, timeout: float = 20) -> None:
        """scancel every job and wait (bounded) until the queue is empty."""
        if "slurmctld" not in self.procs or self.procs["slurmctld"].poll() is not None:
            return
        try:
            self.run("scancel", "--user", str(os.geteuid()), timeout=10)
        except subprocess.TimeoutExpired:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                p = self.run("squeue", "-h", "-t", "PD,R,CG,S,CF", "-o", "%i", timeout=10)
            except subprocess.TimeoutExpired:
                return
            if p.returncode != 0 or not p.stdout.strip():
                return
            time.sleep(0.2)

    def stop(self) -> None:
        """Always safe to call (idempotent): cancel jobs, stop daemons, drop the link."""
        if self.stopped:
            return
        self.stopped = True
        try:
            self.cancel_all()
        except Exception:  # noqa: BLE001 - teardown must go on
            pass
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is not None and p.poll() is None:
                _stop_pid(p.pid)
            if p is not None:
                try:
                    p.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    pass
        if self.linked and ETC_CONF.is_symlink() and Path(os.readlink(ETC_CONF)) == self.conf:
            ETC_CONF.unlink()
        self.linked = False


def require_cluster_support() -> str | None:
    """Why a cluster cannot be brought up here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root (starts munged/slurmctld/slurmd, links /etc/slurm/slurm.conf)"
    if ETC_CONF.exists() and not ETC_CONF.is_symlink():
        return f"{ETC_CONF} is a real file: this machine is configured for another cluster"
    return install_packages()


# ------------------------------------------------------------------ pytest fixture
# One cluster per test process, shared by every fixture user (refcounted, so importing the
# fixture both in conftest.py and in a test module still brings up a single cluster).
_shared: dict[str, object] = {"cluster": None, "users": 0, "error": None}


def _unavailable(msg: str):
    import pytest

    if in_ci():  # CI must exercise SLURM: never silently skip there
        pytest.fail(f"SLURM test cluster unavailable in CI (CI=true): {msg}", pytrace=False)
    pytest.skip(f"SLURM test cluster unavailable: {msg}")


def acquire_cluster() -> SlurmCluster:
    """Bring up (once) and return the shared cluster; skip/fail the caller if impossible."""
    if _shared["cluster"] is not None:
        _shared["users"] += 1
        return _shared["cluster"]
    if _shared["error"] is not None:
        _unavailable(_shared["error"])
    t0 = time.monotonic()
    reason = require_cluster_support()
    install_s = time.monotonic() - t0
    if reason:
        _shared["error"] = reason
        _unavailable(reason)
    import tempfile

    root = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir="/tmp"))  # short: unix socket paths
    cluster = SlurmCluster(root)
    try:
        cluster.start()
    except Exception as e:  # noqa: BLE001 - any bring-up failure: stop, then skip/fail
        cluster.stop()
        msg = f"bring-up failed ({type(e).__name__}): {e}"
        if not isinstance(e, ClusterError):  # ClusterError messages already carry the logs
            msg += "\n" + cluster.logs()
        _shared["error"] = msg + f"\n(cluster folder kept: {root})"
        _unavailable(_shared["error"])
    cluster.timings["install"] = install_s
    _shared.update(cluster=cluster, users=1)
    return cluster


def release_cluster() -> None:
    _shared["users"] -= 1
    cluster = _shared["cluster"]
    if _shared["users"] <= 0 and cluster is not None:
        _shared["cluster"] = None
        cluster.stop()
        if not os.environ.get("SFTRL_SLURM_KEEP"):
            shutil.rmtree(cluster.root, ignore_errors=True)


try:
    import pytest as _pytest
except ImportError:  # the module also runs as a script (up/down) without pytest
    _pytest = None

if _pytest is not None:

    @_pytest.fixture(scope="session", name="slurm_cluster")
    def slurm_cluster_fixture():
        """A running single-node SLURM cluster (session scope), torn down at the end.

        Yields a SlurmCluster: `.profile_args` (snakemake CLI args: the repo's slurm
        profile + the local-cluster overlay), `.env` (environment: venv on PATH,
        SLURM_CONF), `.snakemake(*args, cwd=..., timeout=...)` (bounded run),
        `.run(*cmd)` (a SLURM client command), `.logs()`, `.timings`, `.version`.
        Skips without root/apt; fails instead of skipping when CI=true.
        """
        cluster = acquire_cluster()
        try:
            yield cluster
        finally:
            release_cluster()


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in {"up", "down"}:
        print("usage: slurm_cluster.py up|down DIR", file=sys.stderr)
        return 2
    root = Path(argv[1]).resolve()
    if argv[0] == "up":
        reason = require_cluster_support()
        if reason:
            print(reason, file=sys.stderr)
            return 1
        root.mkdir(parents=True, exist_ok=True)
        c = SlurmCluster(root)
        try:
            c.start()
        except ClusterError as e:
            c.stop()
            print(e, file=sys.stderr)
            return 1
        atexit.unregister(c.stop)  # leave it running; `down DIR` stops it
        # mark it live for as long as slurmctld runs (test sessions wait for it to go)
        (root / "run" / "owner.pid").write_text(f"{c.procs['slurmctld'].pid}\n")
        print(f"up in {c.timings['slurmd']:.1f} s; export SLURM_CONF={c.conf}")
        return 0
    # down: stop by the recorded PIDs
    env = dict(os.environ, SLURM_CONF=str(root / "slurm.conf"))
    subprocess.run(["scancel", "--user", str(os.geteuid())], env=env, timeout=10, check=False)
    for name in ("slurmd", "slurmctld", "munged"):
        try:
            pid = int((root / "run" / f"{name}.pid").read_text())
        except (OSError, ValueError):
            continue
        if _pid_alive(pid) and _cmdline_mentions(pid, str(root)):
            _stop_pid(pid)
    if ETC_CONF.is_symlink() and Path(os.readlink(ETC_CONF)) == root / "slurm.conf":
        ETC_CONF.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
