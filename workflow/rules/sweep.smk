# Parameter sweep: the mesh/train/reconstruct/evaluate rules again, once per point of the
# grid in config sweep, each point in its own folder; then a table and plot comparing them.
if SWEEP is not None:

    localrules:
        sweep_summary,
        sweep_provenance,

    use rule mesh as sweep_mesh with:
        input:
            unpack(mesh_user_files),
            consensus_map="results/{dataset}/prep/consensus.mrc",
        output:
            **outputs_moved_to(rules.mesh.output, f"{SWEEP_POINT_OUTPUT}/mesh"),
        log:
            f"{SWEEP_POINT}/logs/mesh.log",
        benchmark:
            f"{SWEEP_POINT}/benchmarks/mesh.tsv"
        params:
            mesh=sweep_mesh_parameters,

    use rule train as sweep_train with:
        input:
            unpack(training_user_files),
            prep_info="results/{dataset}/prep/prep.json",
            particles="results/{dataset}/prep/particles.star",
            stack="results/{dataset}/prep/particles.mrcs",
            consensus="results/{dataset}/prep/consensus.mrc",
            source_particles=source_particles,
            mesh=sweep_mesh,
        output:
            **outputs_moved_to(rules.train.output, f"{SWEEP_POINT_OUTPUT}/train"),
        log:
            f"{SWEEP_POINT}/logs/train.log",
        benchmark:
            f"{SWEEP_POINT}/benchmarks/train.tsv"
        params:
            train=sweep_training_parameters,

    use rule reconstruct as sweep_reconstruct with:
        input:
            checkpoint=f"{SWEEP_POINT}/train/model.pt",
            mesh=sweep_mesh,
            prep_info="results/{dataset}/prep/prep.json",
            particles="results/{dataset}/prep/particles.star",
            source_particles=source_particles,
        output:
            **outputs_moved_to(
                rules.reconstruct.output, f"{SWEEP_POINT_OUTPUT}/reconstruct"
            ),
        log:
            f"{SWEEP_POINT}/logs/reconstruct.log",
        benchmark:
            f"{SWEEP_POINT}/benchmarks/reconstruct.tsv"

    use rule evaluate as sweep_evaluate with:
        input:
            unpack(ground_truth_files),
            prep_info="results/{dataset}/prep/prep.json",
            particles="results/{dataset}/prep/particles.star",
            checkpoint=f"{SWEEP_POINT}/train/model.pt",
            mesh=sweep_mesh,
        output:
            **outputs_moved_to(
                rules.evaluate.output, f"{SWEEP_POINT_OUTPUT}/evaluation"
            ),
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
            points=sweep_points_table(),
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
            sweep=sweep_points_table(),
