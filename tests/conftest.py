"""Shared fixtures: the local SLURM cluster (session-wide, started once when a test asks)."""

import os

# Offline: nothing may be downloaded, and telemetry pings would hang without a network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from slurm_cluster import slurm_cluster_fixture  # noqa: E402,F401
