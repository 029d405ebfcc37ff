rule localres:
    input:
        checkpoint="results/{dataset}/train/model.pt",
        mesh="results/{dataset}/mesh/mesh.npz",
        half_maps=expand(
            "results/{{dataset}}/reconstruct/{kind}_map_half_{half}.mrc",
            kind=reconstruction_kinds(),
            half=["A", "B"],
        ),
        recon="results/{dataset}/reconstruct/recon.json",
    output:
        table=report(
            "results/{dataset}/localres/regions.tsv",
            caption="../report/regions_table.rst",
            category="4. Reconstruction",
            labels={"item": "resolution per region (table)"},
        ),
        fsc_plot=report(
            "results/{dataset}/localres/fsc_regions.png",
            caption="../report/regions_fsc.rst",
            category="4. Reconstruction",
            labels={"item": "FSC per region"},
        ),
        fsc="results/{dataset}/localres/regions_fsc.tsv",
        regions="results/{dataset}/localres/regions.mrc",
        maps=expand(
            "results/{{dataset}}/localres/localres_{kind}.mrc",
            kind=reconstruction_kinds(),
        ),
        plot=report(
            "results/{dataset}/localres/localres.png",
            caption="../report/localres.rst",
            category="4. Reconstruction",
            labels={"item": "local resolution"},
        ),
        chimerax="results/{dataset}/localres/localres.cxc",
        summary="results/{dataset}/localres/localres.json",
    log:
        "results/{dataset}/logs/localres.log",
    benchmark:
        "results/{dataset}/benchmarks/localres.tsv"
    conda:
        "../../envs/flexcore-cuda.yaml"
    threads: 1  # measured: a second thread does not speed it up (docs/workflow.md)
    resources:
        gpu=1,
        mem_mb=job_memory("localres"),
        runtime=job_runtime("localres"),
        gpu_mem_mb=job_gpu_memory("localres"),
    params:
        localres=localres_parameters(),
    script:
        "../scripts/localres.py"
