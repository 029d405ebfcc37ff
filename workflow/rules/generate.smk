rule generate:
    input:
        unpack(generate_user_files),
        checkpoint="results/{dataset}/train/model.pt",
        mesh="results/{dataset}/mesh/mesh.npz",
    output:
        frames=directory(series_files("results/{dataset}/generate", "")),
        movies=report(
            series_files("results/{dataset}/generate", ".gif"),
            caption="../report/series_movie.rst",
            category="3. Motion",
        ),
        strips=report(
            series_files("results/{dataset}/generate", ".png"),
            caption="../report/series_strip.rst",
            category="3. Motion",
        ),
        chimerax=series_files("results/{dataset}/generate", ".cxc"),
        strain_map="results/{dataset}/generate/strain.mrc",
        strain_plot=report(
            "results/{dataset}/generate/strain.png",
            caption="../report/strain.rst",
            category="3. Motion",
            labels={"item": "strain of the motion"},
        ),
        summary="results/{dataset}/generate/generate.json",
    log:
        "results/{dataset}/logs/generate.log",
    benchmark:
        "results/{dataset}/benchmarks/generate.tsv"
    # the longest of the light rules after training starts before them (docs/workflow.md)
    priority: 1
    conda:
        "../../envs/flexcore-cuda.yaml"
    threads: 1  # measured: a second thread does not speed it up (docs/workflow.md)
    resources:
        gpu=1,
        mem_mb=job_memory("generate"),
        runtime=job_runtime("generate"),
        gpu_mem_mb=job_gpu_memory("generate"),
    params:
        generate=generate_parameters(),
    script:
        "../scripts/generate.py"
