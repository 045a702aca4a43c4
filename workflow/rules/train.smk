# Training stages run as `python -m sftrl.jobs --spec ...`: the same command runs under
# `accelerate launch` on several GPUs, where a script: rule would get no snakemake object.


rule convert:
    input:
        unpack(parents_of("convert")),
    output:
        f"{RESULTS}/convert/{{id}}/manifest.json",
    log:
        "logs/convert/{id}.log",
    conda:
        "../../envs/sftrl.yaml"
    threads: res("convert", "threads")
    resources:
        mem_mb=res("convert", "mem_mb"),
        runtime=res("convert", "runtime"),
        gpu=res("convert", "gpu"),
    params:
        spec=spec_json("convert"),
    shell:
        "python -m sftrl.jobs --spec {params.spec:q} > {log} 2>&1"


rule pretrain:
    input:
        unpack(parents_of("pretrain")),
    output:
        f"{RESULTS}/pretrain/{{id}}/manifest.json",
    log:
        "logs/pretrain/{id}.log",
    conda:
        "../../envs/sftrl.yaml"
    threads: res("pretrain", "threads")
    resources:
        mem_mb=res("pretrain", "mem_mb"),
        runtime=res("pretrain", "runtime"),
        gpu=res("pretrain", "gpu"),
    params:
        spec=spec_json("pretrain"),
        launcher=launcher("pretrain"),
    shell:
        "{params.launcher} -m sftrl.jobs --spec {params.spec:q} > {log} 2>&1"


rule sft:
    input:
        unpack(parents_of("sft")),
    output:
        f"{RESULTS}/sft/{{id}}/manifest.json",
    log:
        "logs/sft/{id}.log",
    conda:
        "../../envs/sftrl.yaml"
    threads: res("sft", "threads")
    resources:
        mem_mb=res("sft", "mem_mb"),
        runtime=res("sft", "runtime"),
        gpu=res("sft", "gpu"),
    params:
        spec=spec_json("sft"),
        launcher=launcher("sft"),
    shell:
        "{params.launcher} -m sftrl.jobs --spec {params.spec:q} > {log} 2>&1"


rule rl:
    input:
        unpack(parents_of("rl")),
    output:
        f"{RESULTS}/rl/{{id}}/manifest.json",
    log:
        "logs/rl/{id}.log",
    conda:
        "../../envs/sftrl.yaml"
    threads: res("rl", "threads")
    resources:
        mem_mb=res("rl", "mem_mb"),
        runtime=res("rl", "runtime"),
        gpu=res("rl", "gpu"),
    params:
        spec=spec_json("rl"),
        launcher=launcher("rl"),
    shell:
        "{params.launcher} -m sftrl.jobs --spec {params.spec:q} > {log} 2>&1"


rule rlsft:
    input:
        unpack(parents_of("rlsft")),
    output:
        f"{RESULTS}/rlsft/{{id}}/manifest.json",
    log:
        "logs/rlsft/{id}.log",
    conda:
        "../../envs/sftrl.yaml"
    threads: res("rlsft", "threads")
    resources:
        mem_mb=res("rlsft", "mem_mb"),
        runtime=res("rlsft", "runtime"),
        gpu=res("rlsft", "gpu"),
    params:
        spec=spec_json("rlsft"),
        launcher=launcher("rlsft"),
    shell:
        "{params.launcher} -m sftrl.jobs --spec {params.spec:q} > {log} 2>&1"
