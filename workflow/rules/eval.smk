rule eval:
    input:
        unpack(parents_of("eval")),
    output:
        f"{RESULTS}/eval/{{id}}/manifest.json",
    log:
        "logs/eval/{id}.log",
    conda:
        "../../envs/sftrl.yaml"
    threads: res("eval", "threads")
    resources:
        mem_mb=res("eval", "mem_mb"),
        runtime=res("eval", "runtime"),
        gpu=res("eval", "gpu"),
    params:
        spec=spec_of("eval"),
    script:
        "../scripts/run_stage.py"
