"""Run one sftrl stage from a Snakemake `script:` rule: unpack the job spec, call the library."""

import sys

from sftrl.jobs import run_stage

with open(snakemake.log[0], "w") as log:  # noqa: F821 (injected by Snakemake)
    sys.stdout = sys.stderr = log
    run_stage(snakemake.params.spec)  # noqa: F821
