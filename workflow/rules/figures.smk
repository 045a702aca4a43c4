# Figures read tidy metric tables only (never a model); a plot setting changes only plots.


# Light and quick: on a cluster they run where snakemake runs instead of waiting in a queue.
localrules:
    all,
    tables,
    figure,
    summary,


rule tables:
    input:
        unpack(parents_of("tables")),
    output:
        f"{RESULTS}/tables/{{id}}/manifest.json",
    log:
        "logs/tables/{id}.log",
    conda:
        "../../envs/sftrl.yaml"
    threads: 1
    resources:
        mem_mb=res("tables", "mem_mb"),
        runtime=res("tables", "runtime"),
    params:
        spec=spec_of("tables"),
    script:
        "../scripts/run_stage.py"


rule figure:
    input:
        PLAN.tables.manifest,
    output:
        pdf=report(
            f"{RESULTS}/figures/{{name}}.pdf",
            caption="../report/figure.rst",
            category="Figures",
        ),
        sidecar=f"{RESULTS}/figures/{{name}}.json",
    log:
        "logs/figures/{name}.log",
    wildcard_constraints:
        name="|".join(FIGURES),
    conda:
        "../../envs/sftrl.yaml"
    threads: 1
    resources:
        mem_mb=res("figures", "mem_mb"),
        runtime=res("figures", "runtime"),
    params:
        settings=lambda w: figure_settings(w.name),
        code=presentation_hash("figures"),
    script:
        "../scripts/figure.py"


rule summary:
    input:
        PLAN.tables.manifest,
    output:
        f"{RESULTS}/summary.md",
    log:
        "logs/summary.log",
    conda:
        "../../envs/sftrl.yaml"
    script:
        "../scripts/summary.py"
