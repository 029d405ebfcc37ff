rule prep:
    input:
        unpack(prep_user_files),
    output:
        **converted_source_output(),
        particles="results/{dataset}/prep/particles.star",
        stack="results/{dataset}/prep/particles.mrcs",
        consensus="results/{dataset}/prep/consensus.mrc",
        info="results/{dataset}/prep/prep.json",
    log:
        "results/{dataset}/logs/prep.log",
    benchmark:
        "results/{dataset}/benchmarks/prep.tsv"
    conda:
        "../../envs/flexcore-cpu.yaml"
    threads: 2
    resources:
        mem_mb=job_memory("prep"),
        runtime=job_runtime("prep"),
    params:
        pixel_size_A=config["input"]["pixel_size_A"],
        project_dir=config["input"]["project_dir"] or None,
        prep=config["prep"],
    script:
        "../scripts/prep.py"
