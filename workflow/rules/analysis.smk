rule spectrum:
    input:
        unpack(parents_of("spectrum")),
    output:
        f"{RESULTS}/spectrum/{{id}}/manifest.json",
    log:
        "logs/spectrum/{id}.log",
    conda:
        "../../envs/sftrl.yaml"
    threads: res("spectrum", "threads")
    resources:
        mem_mb=res("spectrum", "mem_mb"),
        runtime=res("spectrum", "runtime"),
        gpu=res("spectrum", "gpu"),
    params:
        spec=spec_of("spectrum"),
    script:
        "../scripts/run_stage.py"


rule surgery:
    input:
        unpack(parents_of("surgery")),
    output:
        f"{RESULTS}/surgery/{{id}}/manifest.json",
    log:
        "logs/surgery/{id}.log",
    conda:
        "../../envs/sftrl.yaml"
    threads: res("surgery", "threads")
    resources:
        mem_mb=res("surgery", "mem_mb"),
        runtime=res("surgery", "runtime"),
        gpu=res("surgery", "gpu"),
    params:
        spec=spec_of("surgery"),
    script:
        "../scripts/run_stage.py"
