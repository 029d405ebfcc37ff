# One solve (flex or noflex, half A or B) per job; only asked for with
# reconstruct.split_jobs, when the reconstruct job combines the four.
rule reconstruct_half:
    input:
        checkpoint="results/{dataset}/train/model.pt",
        mesh="results/{dataset}/mesh/mesh.npz",
        prep_info="results/{dataset}/prep/prep.json",
        particles="results/{dataset}/prep/particles.star",
        source_particles=source_particles,
    output:
        map=temp("results/{dataset}/reconstruct/halves/{kind}_map_half_{half}.mrc"),
        record=temp("results/{dataset}/reconstruct/halves/{kind}_half_{half}.json"),
    log:
        "results/{dataset}/logs/reconstruct_{kind}_half_{half}.log",
    benchmark:
        "results/{dataset}/benchmarks/reconstruct_{kind}_half_{half}.tsv"
    wildcard_constraints:
        kind="flex|noflex",
        half="A|B",
    priority: 2  # as the reconstruct rule's
    conda:
        "../../envs/flexcore-cuda.yaml"
    threads: 4
    resources:
        gpu=job_gpus("reconstruct"),
        mem_mb=job_memory("reconstruct_half"),
        runtime=job_runtime("reconstruct_half"),
        gpu_mem_mb=job_gpu_memory("reconstruct_half"),
    params:
        reconstruct=reconstruct_half_parameters(),
    script:
        "../scripts/reconstruct_half.py"


rule reconstruct:
    input:
        checkpoint="results/{dataset}/train/model.pt",
        mesh="results/{dataset}/mesh/mesh.npz",
        prep_info="results/{dataset}/prep/prep.json",
        particles="results/{dataset}/prep/particles.star",
        source_particles=source_particles,
    output:
        flex_map="results/{dataset}/reconstruct/flex_map.mrc",
        half_maps=expand(
            "results/{{dataset}}/reconstruct/flex_map_half_{half}.mrc", half=["A", "B"]
        ),
        sharp_map="results/{dataset}/reconstruct/flex_map_sharp.mrc",
        rigid_maps=rigid_baseline_files("results/{dataset}/reconstruct"),
        fsc="results/{dataset}/reconstruct/fsc.tsv",
        fsc_plot=report(
            "results/{dataset}/reconstruct/fsc.png",
            caption="../report/fsc.rst",
            category="4. Reconstruction",
            labels={"item": "FSC of the reconstruction (plot)"},
        ),
        lbfgs="results/{dataset}/reconstruct/lbfgs.tsv",
        summary="results/{dataset}/reconstruct/recon.json",
    log:
        "results/{dataset}/logs/reconstruct.log",
    benchmark:
        "results/{dataset}/benchmarks/reconstruct.tsv"
    # first when cores are short: it heads the longest chain after training (reconstruct,
    # localres, the state maps, the report; docs/workflow.md)
    priority: 2
    conda:
        "../../envs/flexcore-cuda.yaml"
    threads: 4
    resources:
        gpu=job_gpus("reconstruct"),
        mem_mb=job_memory("reconstruct"),
        runtime=job_runtime("reconstruct"),
        gpu_mem_mb=job_gpu_memory("reconstruct"),
    params:
        reconstruct=reconstruct_parameters(),
    script:
        "../scripts/reconstruct.py"


# With reconstruct.split_jobs the reconstruction's outputs come from combining the four
# reconstruct_half solves (no GPU); the one-job rule above stays for sweeps.
if config["reconstruct"]["split_jobs"]:

    ruleorder: reconstruct_combine > reconstruct

    rule reconstruct_combine:
        input:
            unpack(solve_files),
        output:
            flex_map="results/{dataset}/reconstruct/flex_map.mrc",
            half_maps=expand(
                "results/{{dataset}}/reconstruct/flex_map_half_{half}.mrc",
                half=["A", "B"],
            ),
            sharp_map="results/{dataset}/reconstruct/flex_map_sharp.mrc",
            rigid_maps=rigid_baseline_files("results/{dataset}/reconstruct"),
            fsc="results/{dataset}/reconstruct/fsc.tsv",
            fsc_plot=report(
                "results/{dataset}/reconstruct/fsc.png",
                caption="../report/fsc.rst",
                category="4. Reconstruction",
            ),
            lbfgs="results/{dataset}/reconstruct/lbfgs.tsv",
            summary="results/{dataset}/reconstruct/recon.json",
        log:
            "results/{dataset}/logs/reconstruct_combine.log",
        benchmark:
            "results/{dataset}/benchmarks/reconstruct_combine.tsv"
        conda:
            "../../envs/flexcore-cpu.yaml"
        threads: 2
        resources:
            mem_mb=job_memory("reconstruct_combine"),
            runtime=job_runtime("reconstruct_combine"),
        params:
            bfactor=config["reconstruct"]["bfactor"],
        script:
            "../scripts/reconstruct_combine.py"
