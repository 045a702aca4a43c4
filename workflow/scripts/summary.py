"""Write results/summary.md, the key numbers of the run, from the tidy metric tables."""

import os
import sys

from sftrl.tables import write_summary

with open(snakemake.log[0], "w") as log:  # noqa: F821 (injected by Snakemake)
    sys.stdout = sys.stderr = log
    write_summary(os.path.dirname(snakemake.input[0]), snakemake.output[0])  # noqa: F821
