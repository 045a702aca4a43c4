"""Shared fixtures: the local SLURM cluster (session-wide, started once when a test asks), and
one torch thread for modules of tiny models (`pytestmark = pytest.mark.usefixtures(...)`)."""

import pytest
import torch
from slurm_cluster import slurm_cluster_fixture  # noqa: F401

from sftrl import set_offline_env

set_offline_env()  # nothing may be downloaded; telemetry pings would hang without a network


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matrices on a shared 2-core machine: one intra-op thread is as fast or faster, and
    does not fight the other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
