rule data:
    output:
        f"{RESULTS}/data/{{id}}/manifest.json",
    params:
        spec=spec_of("data"),
    log:
        f"logs/data/{{id}}.log",
    threads: 1
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    conda:
        "../../envs/sftrl.yaml"
    script:
        "../scripts/run_stage.py"
