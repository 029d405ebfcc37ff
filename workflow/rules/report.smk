localrules:
    provenance,
    report_pages,


rule evaluate:
    input:
        unpack(ground_truth_files),
        prep_info="results/{dataset}/prep/prep.json",
        particles="results/{dataset}/prep/particles.star",
        checkpoint="results/{dataset}/train/model.pt",
        mesh="results/{dataset}/mesh/mesh.npz",
    output:
        summary="results/{dataset}/evaluation/evaluation.json",
        table=report(
            "results/{dataset}/evaluation/evaluation.tsv",
            caption="../report/evaluation.rst",
            category="5. Ground truth",
            labels={"item": "model against the ground truth (table)"},
        ),
    log:
        "results/{dataset}/logs/evaluate.log",
    benchmark:
        "results/{dataset}/benchmarks/evaluate.tsv"
    conda:
        "../../envs/flexcore-cpu.yaml"
    threads: 1  # measured: a second thread does not speed it up (docs/workflow.md)
    resources:
        mem_mb=job_memory("evaluate"),
        runtime=job_runtime("evaluate"),
    script:
        "../scripts/evaluate.py"


rule evaluate_reconstruction:
    input:
        unpack(ground_truth_files),
        prep_info="results/{dataset}/prep/prep.json",
        particles="results/{dataset}/prep/particles.star",
        checkpoint="results/{dataset}/train/model.pt",
        mesh="results/{dataset}/mesh/mesh.npz",
        recon="results/{dataset}/reconstruct/recon.json",
        maps=rigid_baseline_files("results/{dataset}/reconstruct"),
    output:
        summary="results/{dataset}/evaluation/reconstruction.json",
        table=report(
            "results/{dataset}/evaluation/reconstruction.tsv",
            caption="../report/evaluation_reconstruction.rst",
            category="5. Ground truth",
            labels={"item": "reconstruction against the ground truth (table)"},
        ),
        plot=report(
            "results/{dataset}/evaluation/moving_fsc.png",
            caption="../report/moving_fsc.rst",
            category="5. Ground truth",
            labels={"item": "FSC in the moving domain"},
        ),
    log:
        "results/{dataset}/logs/evaluate_reconstruction.log",
    benchmark:
        "results/{dataset}/benchmarks/evaluate_reconstruction.tsv"
    conda:
        "../../envs/flexcore-cpu.yaml"
    threads: 1  # measured: a second thread does not speed it up (docs/workflow.md)
    resources:
        mem_mb=job_memory("evaluate_reconstruction"),
        runtime=job_runtime("evaluate_reconstruction"),
    script:
        "../scripts/evaluate_reconstruction.py"


rule provenance:
    output:
        report(
            "results/{dataset}/provenance.yaml",
            caption="../report/provenance.rst",
            category="7. Provenance",
            labels={"item": "provenance (YAML)"},
        ),
    log:
        "results/{dataset}/logs/provenance.log",
    conda:
        "../../envs/flexcore-cpu.yaml"
    params:
        config=config,
        seeds=seeds(),
        sweep={},
    script:
        "../scripts/provenance.py"


rule report_pages:
    input:
        unpack(report_page_sources),
    output:
        **report_page_outputs(),
    log:
        "results/{dataset}/logs/report_pages.log",
    benchmark:
        "results/{dataset}/benchmarks/report_pages.tsv"
    conda:
        "../../envs/flexcore-cpu.yaml"
    threads: 1
    resources:
        mem_mb=job_memory("report_pages"),
        runtime=job_runtime("report_pages"),
    params:
        titles=report_page_titles(),
    script:
        "../scripts/report_pages.py"
