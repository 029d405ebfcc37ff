rule select:
    input:
        unpack(select_user_files),
        latents="results/{dataset}/train/latents.npy",
        prep_info="results/{dataset}/prep/prep.json",
        particles="results/{dataset}/prep/particles.star",
        source_particles=source_particles,
    output:
        subsets=selection_files("results/{dataset}/select"),
        plot=report(
            "results/{dataset}/select/selection.png",
            caption="../report/selection.rst",
            category="6. Selection and states",
            labels={"item": "selected particles"},
        ),
        summary="results/{dataset}/select/select.json",
    log:
        "results/{dataset}/logs/select.log",
    benchmark:
        "results/{dataset}/benchmarks/select.tsv"
    conda:
        "../../envs/flexcore-cpu.yaml"
    threads: 1
    resources:
        mem_mb=job_memory("select"),
        runtime=job_runtime("select"),
    params:
        select=select_parameters(),
    script:
        "../scripts/select.py"
