rule mesh:
    input:
        unpack(mesh_user_files),
        consensus_map="results/{dataset}/prep/consensus.mrc",
    output:
        mesh="results/{dataset}/mesh/mesh.npz",
        mask="results/{dataset}/mesh/mask.mrc",
        mask_soft="results/{dataset}/mesh/mask_soft.mrc",
        slices=report(
            "results/{dataset}/mesh/mesh_slices.png",
            caption="../report/mesh_slices.rst",
            category="1. Mesh",
            labels={"item": "mesh over the consensus map"},
        ),
        pdb="results/{dataset}/mesh/mesh.pdb",
        chimerax="results/{dataset}/mesh/mesh.cxc",
        summary="results/{dataset}/mesh/mesh_summary.json",
    log:
        "results/{dataset}/logs/mesh.log",
    benchmark:
        "results/{dataset}/benchmarks/mesh.tsv"
    conda:
        "../../envs/flexcore-cpu.yaml"
    threads: 1
    resources:
        mem_mb=job_memory("mesh"),
        runtime=job_runtime("mesh"),
    params:
        mesh=mesh_parameters(),
    script:
        "../scripts/mesh.py"
