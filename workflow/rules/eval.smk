rule eval:
    input:
        unpack(parents_of("eval")),
    output:
        f"{RESULTS}/eval/{{id}}/manifest.json",
    params:
        spec=spec_of("eval"),
    log:
        f"logs/eval/{{id}}.log",
    threads: res("eval", "threads")
    resources:
        mem_mb=res("eval", "mem_mb"),
        runtime=res("eval", "runtime"),
        gpu=res("eval", "gpu"),
    conda:
        "../../envs/sftrl.yaml"
    script:
        "../scripts/run_stage.py"
