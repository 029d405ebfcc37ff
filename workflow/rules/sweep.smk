# Parameter sweep: the stages downstream of the swept keys run again once per point (grid
# or zip of config sweep), each point in its own folder; then a table and plot compare them.
if SWEEP is not None:

    localrules:
        sweep_summary,
        sweep_provenance,

    use rule prep as sweep_prep with:
        output:
            **sweep_rule_outputs("prep", f"{SWEEP_POINT}/prep"),
        log:
            f"{SWEEP_POINT}/logs/prep.log",
        benchmark:
            f"{SWEEP_POINT}/benchmarks/prep.tsv"
        params:
            pixel_size_A=config["input"]["pixel_size_A"],
            project_dir=config["input"]["project_dir"] or None,
            prep=sweep_prep_parameters,

    use rule mesh as sweep_mesh with:
        input:
            unpack(mesh_user_files),
            consensus_map=sweep_mesh_input,
        output:
            **sweep_rule_outputs("mesh", f"{SWEEP_POINT}/mesh"),
        log:
            f"{SWEEP_POINT}/logs/mesh.log",
        benchmark:
            f"{SWEEP_POINT}/benchmarks/mesh.tsv"
        params:
            mesh=sweep_mesh_parameters,

    use rule train as sweep_train with:
        input:
            unpack(training_user_files),
            unpack(sweep_training_input),
            source_particles=source_particles,
        output:
            **sweep_rule_outputs("train", f"{SWEEP_POINT}/train"),
        log:
            f"{SWEEP_POINT}/logs/train.log",
        benchmark:
            f"{SWEEP_POINT}/benchmarks/train.tsv"
        params:
            train=sweep_training_parameters,

    use rule reconstruct as sweep_reconstruct with:
        input:
            unpack(sweep_prep_files),
            checkpoint=sweep_model,
            mesh=sweep_mesh,
            source_particles=source_particles,
        output:
            **sweep_rule_outputs("reconstruct", f"{SWEEP_POINT}/reconstruct"),
        log:
            f"{SWEEP_POINT}/logs/reconstruct.log",
        benchmark:
            f"{SWEEP_POINT}/benchmarks/reconstruct.tsv"
        params:
            reconstruct=sweep_reconstruct_parameters,

    use rule select as sweep_select with:
        input:
            unpack(sweep_prep_files),
            latents=sweep_latents,
            source_particles=source_particles,
        output:
            **sweep_rule_outputs("select", f"{SWEEP_POINT}/select"),
        log:
            f"{SWEEP_POINT}/logs/select.log",
        benchmark:
            f"{SWEEP_POINT}/benchmarks/select.tsv"
        params:
            select=sweep_select_parameters,

    use rule evaluate as sweep_evaluate with:
        input:
            unpack(ground_truth_files),
            unpack(sweep_prep_files),
            checkpoint=sweep_model,
            mesh=sweep_mesh,
        output:
            **sweep_rule_outputs("evaluate", f"{SWEEP_POINT}/evaluation"),
        log:
            f"{SWEEP_POINT}/logs/evaluate.log",
        benchmark:
            f"{SWEEP_POINT}/benchmarks/evaluate.tsv"

    rule sweep_summary:
        input:
            unpack(sweep_summary_inputs),
        output:
            table=report(
                "results/{dataset}/sweep/{sweep}/summary.tsv",
                caption="../report/sweep_table.rst",
                category="6. Sweep",
                labels={"item": "sweep summary (table)"},
            ),
            plot=report(
                "results/{dataset}/sweep/{sweep}/summary.png",
                caption="../report/sweep_plot.rst",
                category="6. Sweep",
                labels={"item": "sweep summary (plot)"},
            ),
        log:
            "results/{dataset}/sweep/{sweep}/logs/summary.log",
        conda:
            "../../envs/flexcore-cpu.yaml"
        params:
            points=SWEEP,
            mode=config["sweep"]["mode"],
        script:
            "../scripts/sweep_summary.py"

    use rule provenance as sweep_provenance with:
        output:
            "results/{dataset}/sweep/{sweep}/provenance.yaml",
        log:
            "results/{dataset}/sweep/{sweep}/logs/provenance.log",
        params:
            config=config,
            seeds=seeds(),
            sweep=SWEEP,
