"""Shared fixtures: the local SLURM cluster (session-wide, started once when a test asks)."""

from slurm_cluster import slurm_cluster_fixture  # noqa: F401

from sftrl import set_offline_env

set_offline_env()  # nothing may be downloaded; telemetry pings would hang without a network
