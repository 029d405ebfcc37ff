rule explore:
    input:
        checkpoint="results/{dataset}/train/model.pt",
        mesh="results/{dataset}/mesh/mesh.npz",
    output:
        page=report(
            "results/{dataset}/train/explorer.html",
            caption="../report/explorer.rst",
            category="2. Training",
            labels={"item": "latent explorer"},
        ),
    log:
        "results/{dataset}/logs/explore.log",
    benchmark:
        "results/{dataset}/benchmarks/explore.tsv"
    conda:
        "../../envs/flexcore-cpu.yaml"
    threads: 1  # measured: a second thread does not speed it up (docs/workflow.md)
    resources:
        mem_mb=job_memory("explore"),
        runtime=job_runtime("explore"),
    params:
        explore=explore_parameters(),
    script:
        "../scripts/explore.py"
