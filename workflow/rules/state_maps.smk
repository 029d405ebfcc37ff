rule state_maps:
    input:
        states=state_map_states,
        checkpoint="results/{dataset}/train/model.pt",
        mesh="results/{dataset}/mesh/mesh.npz",
        half_maps=expand(
            "results/{{dataset}}/reconstruct/flex_map_half_{half}.mrc", half=["A", "B"]
        ),
        recon="results/{dataset}/reconstruct/recon.json",
    output:
        maps=directory("results/{dataset}/states/maps"),
        table=report(
            "results/{dataset}/states/states.tsv",
            caption="../report/states_table.rst",
            category="6. Selection and states",
            labels={"item": "per-state maps (table)"},
        ),
        fsc_plot=report(
            "results/{dataset}/states/states_fsc.png",
            caption="../report/states_fsc.rst",
            category="6. Selection and states",
            labels={"item": "FSC of each state map"},
        ),
        fsc="results/{dataset}/states/states_fsc.tsv",
        chimerax="results/{dataset}/states/states.cxc",
        summary="results/{dataset}/states/states.json",
    log:
        "results/{dataset}/logs/state_maps.log",
    benchmark:
        "results/{dataset}/benchmarks/state_maps.tsv"
    conda:
        "../../envs/flexcore-cuda.yaml"
    threads: 1  # measured: a second thread does not speed it up (docs/workflow.md)
    resources:
        gpu=1,
        mem_mb=job_memory("state_maps"),
        runtime=job_runtime("state_maps"),
        gpu_mem_mb=job_gpu_memory("state_maps"),
    params:
        states=state_map_parameters(),
    script:
        "../scripts/state_maps.py"
