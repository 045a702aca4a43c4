"""Draw one figure from the tidy metric tables: unpack the Snakemake job, call sftrl."""

import sys

from sftrl.figures import build_figure

with open(snakemake.log[0], "w") as log:  # noqa: F821 (injected by Snakemake)
    sys.stdout = sys.stderr = log
    build_figure(
        snakemake.wildcards.name,  # noqa: F821
        snakemake.params.tables,  # noqa: F821
        snakemake.output.pdf,  # noqa: F821
        snakemake.params.settings,  # noqa: F821
    )
