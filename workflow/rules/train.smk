rule train:
    input:
        unpack(training_user_files),
        prep_info="results/{dataset}/prep/prep.json",
        particles="results/{dataset}/prep/particles.star",
        stack="results/{dataset}/prep/particles.mrcs",
        consensus="results/{dataset}/prep/consensus.mrc",
        source_particles=source_particles,
        mesh="results/{dataset}/mesh/mesh.npz",
    output:
        model="results/{dataset}/train/model.pt",
        latents="results/{dataset}/train/latents.npy",
        latents_pkl="results/{dataset}/train/z.pkl",
        latents_star="results/{dataset}/train/latents.star",
        latents_cs="results/{dataset}/train/latents.cs",
        history="results/{dataset}/train/history.json",
        loss=report(
            "results/{dataset}/train/loss.png",
            caption="../report/loss.rst",
            category="2. Training",
            labels={"item": "loss curves"},
        ),
        latent_plot=report(
            "results/{dataset}/train/latents.png",
            caption="../report/latents.rst",
            category="2. Training",
            labels={"item": "latents"},
        ),
        examples=report(
            "results/{dataset}/train/examples.png",
            caption="../report/examples.rst",
            category="2. Training",
            labels={"item": "held-out examples"},
        ),
        summary="results/{dataset}/train/train.json",
    log:
        "results/{dataset}/logs/train.log",
    benchmark:
        "results/{dataset}/benchmarks/train.tsv"
    conda:
        "../../envs/flexcore-cuda.yaml"
    threads: 4
    resources:
        gpu=job_gpus("train"),
        mem_mb=job_memory("train"),
        runtime=job_runtime("train"),
        gpu_mem_mb=job_gpu_memory("train"),
    params:
        train=training_parameters(),
    script:
        "../scripts/train.py"
