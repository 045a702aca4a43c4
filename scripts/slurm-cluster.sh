#!/usr/bin/env bash
# Local single-node SLURM cluster for tests (Debian 12: slurm 22.05, munge 0.5).
#
#   scripts/slurm-cluster.sh install   install slurmctld slurmd slurm-client munge
#                                      if missing (root, apt). Idempotent and quiet:
#                                      one line on success, the apt log on failure.
#   scripts/slurm-cluster.sh check     exit 0 if every binary the tests need is present.
#   scripts/slurm-cluster.sh up DIR    bring up a cluster in DIR (for debugging by hand;
#   scripts/slurm-cluster.sh down DIR  the tests do this themselves, see tests/slurm_cluster.py)
#
# Installing never starts a daemon: a temporary policy-rc.d refuses service starts, and
# the test fixture starts munged, slurmctld and slurmd by hand in a temp folder.
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge)
BINARIES=(slurmctld slurmd sbatch srun squeue scontrol scancel sinfo munged mungekey)
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

missing() {
    local b out=()
    for b in "${BINARIES[@]}"; do
        command -v "$b" >/dev/null 2>&1 || [[ -x /usr/sbin/$b ]] || out+=("$b")
    done
    echo "${out[*]}"
}

do_install() {
    local miss
    miss="$(missing)"
    if [[ -z "$miss" ]]; then
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        echo "slurm-cluster: need root to install ${PACKAGES[*]} (missing: $miss)" >&2
        return 2
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "slurm-cluster: no apt-get; install ${PACKAGES[*]} by hand (missing: $miss)" >&2
        return 2
    fi
    local log policy_created=0 start rc=0
    log="$(mktemp /tmp/slurm-install.XXXXXX.log)"
    start=$(date +%s)
    # Keep package scripts from starting services (no systemd here; we start daemons by hand).
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_created=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        trap 'exit 130' INT TERM
    fi
    export DEBIAN_FRONTEND=noninteractive
    # DPkg::Lock::Timeout: wait for a concurrent apt/dpkg instead of failing at once
    local apt=(apt-get -y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0
        -o Dpkg::Options::=--force-confdef
        -o Dpkg::Options::=--force-confold)
    if ! "${apt[@]}" install --no-install-recommends "${PACKAGES[@]}" >>"$log" 2>&1; then
        # stale or absent package lists: refresh once and retry
        "${apt[@]}" update >>"$log" 2>&1 &&
            "${apt[@]}" install --no-install-recommends "${PACKAGES[@]}" >>"$log" 2>&1 || rc=$?
    fi
    if [[ $policy_created -eq 1 ]]; then
        rm -f /usr/sbin/policy-rc.d
        trap - EXIT INT TERM
    fi
    miss="$(missing)"
    if [[ $rc -ne 0 || -n "$miss" ]]; then
        echo "slurm-cluster: apt-get install ${PACKAGES[*]} failed (rc=$rc, missing: $miss)." >&2
        echo "--- last lines of $log ---" >&2
        tail -n 30 "$log" >&2
        return 1
    fi
    echo "slurm-cluster: installed ${PACKAGES[*]} in $(($(date +%s) - start)) s ($(slurmctld -V))"
    rm -f "$log"
}

case "${1:-}" in
install) do_install ;;
check)
    miss="$(missing)"
    if [[ -n "$miss" ]]; then
        echo "slurm-cluster: missing: $miss" >&2
        exit 1
    fi
    ;;
up | down)
    [[ $# -eq 2 ]] || { echo "usage: $0 $1 DIR" >&2; exit 2; }
    PY="${PYTHON:-$HERE/../.venv/bin/python}"
    [[ -x "$PY" ]] || PY=python3
    exec "$PY" "$HERE/../tests/slurm_cluster.py" "$1" "$2"
    ;;
*)
    echo "usage: $0 install|check|up DIR|down DIR" >&2
    exit 2
    ;;
esac
