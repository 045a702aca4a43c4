# sftrl: SFT -> RL on GeneralPoints, evaluation, spectra, weight surgery, figures.
# All logic lives in the sftrl package; this file only wires the stages together.
import os

from snakemake.utils import min_version

min_version("9.0")


# The embedded default, found next to this file also when running with --directory.
configfile: os.path.join(workflow.basedir, "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        PLAN.manifests(),
        expand(f"{RESULTS}/figures/{{name}}.pdf", name=FIGURES),
        f"{RESULTS}/summary.md",
