rule spectrum:
    input:
        unpack(parents_of("spectrum")),
    output:
        f"{RESULTS}/spectrum/{{id}}/manifest.json",
    params:
        spec=spec_of("spectrum"),
    log:
        f"logs/spectrum/{{id}}.log",
    threads: res("spectrum", "threads")
    resources:
        mem_mb=res("spectrum", "mem_mb"),
        runtime=res("spectrum", "runtime"),
        gpu=res("spectrum", "gpu"),
    conda:
        "../../envs/sftrl.yaml"
    script:
        "../scripts/run_stage.py"


rule surgery:
    input:
        unpack(parents_of("surgery")),
    output:
        f"{RESULTS}/surgery/{{id}}/manifest.json",
    params:
        spec=spec_of("surgery"),
    log:
        f"logs/surgery/{{id}}.log",
    threads: res("surgery", "threads")
    resources:
        mem_mb=res("surgery", "mem_mb"),
        runtime=res("surgery", "runtime"),
        gpu=res("surgery", "gpu"),
    conda:
        "../../envs/sftrl.yaml"
    script:
        "../scripts/run_stage.py"
