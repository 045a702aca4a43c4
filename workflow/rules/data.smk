rule data:
    output:
        f"{RESULTS}/data/{{id}}/manifest.json",
    log:
        "logs/data/{id}.log",
    conda:
        "../../envs/sftrl.yaml"
    threads: 1
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        spec=spec_of("data"),
    script:
        "../scripts/run_stage.py"
