rule simulate:
    output:
        particles="results/{dataset}/simulate/particles.star",
        stack="results/{dataset}/simulate/particles.mrcs",
        consensus="results/{dataset}/simulate/consensus.mrc",
        mask="results/{dataset}/simulate/mask.mrc",
        moving_mask="results/{dataset}/simulate/moving_mask.mrc",
        gt_maps=directory("results/{dataset}/simulate/gt"),
        ground_truth="results/{dataset}/simulate/ground_truth.json",
        ground_truth_table="results/{dataset}/simulate/ground_truth.csv",
    log:
        "results/{dataset}/logs/simulate.log",
    benchmark:
        "results/{dataset}/benchmarks/simulate.tsv"
    conda:
        "../../envs/flexcore-cpu.yaml"
    threads: 2
    resources:
        mem_mb=job_memory("simulate"),
        runtime=job_runtime("simulate"),
    params:
        simulation=simulation_parameters(),
    script:
        "../scripts/simulate.py"
