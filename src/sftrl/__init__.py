"""sftrl: SFT -> RL study pipeline."""

import os

# Offline and quiet: nothing may be downloaded, and telemetry pings would hang offline. Every
# entry point (the Snakefile, jobs, tests, benchmarks) calls `set_offline_env()`.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def set_offline_env() -> None:
    """Set the offline variables unless the caller's environment already chose them."""
    for name, value in OFFLINE_ENV.items():
        os.environ.setdefault(name, value)
