"""Draw one figure from the tidy metric tables: unpack the Snakemake job, call sftrl."""

import os
import sys

from sftrl.figures.build import build_figure

with open(snakemake.log[0], "w") as log:  # noqa: F821 (injected by Snakemake)
    sys.stdout = sys.stderr = log
    build_figure(
        snakemake.wildcards.name,  # noqa: F821
        os.path.dirname(snakemake.input[0]),  # noqa: F821 (the tables artifact)
        snakemake.output.pdf,  # noqa: F821
        snakemake.params.settings,  # noqa: F821
    )
