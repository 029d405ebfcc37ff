"""What happens when a training output folder already holds a run: refuse, resume, restart.

A run is identified by its *fingerprint*: the resolved training configuration, the mesh's
SHA-256 and the SHA-256 of the prepared particles (``particles.star``, ``particles.mrcs``,
``consensus.mrc``) and of a starting-latents file. Every checkpoint records it. A
checkpoint is *compatible* with a new run when the fingerprints agree, except for
:data:`FREE_KEYS` (the device, the log interval, and ``extra_epochs``, which exists to
train a finished run longer).

``on_existing`` (:func:`checkpoint_to_resume`):

* ``"refuse"`` (the CLI without a flag) — stop with a one-line message that says whether
  the checkpoint found is compatible and names ``--resume`` / ``--restart``;
* ``"resume"`` — continue a compatible checkpoint; a different run is a
  :class:`~flexcore.core.errors.ConfigError` naming what differs;
* ``"restart"`` — remove the earlier run's files and start afresh;
* ``"auto"`` (the workflow) — resume a compatible checkpoint, otherwise remove the earlier
  run's files and start afresh, saying why in the log.
"""

from __future__ import annotations

from pathlib import Path

from ...core.checkpoint import latest_checkpoint, load_checkpoint
from ...core.errors import ConfigError, FlexcoreError, OutputPathError
from ...core.train_config import TrainConfig
from ...core.utils.files import file_sha256
from ...core.utils.logging import get_logger

log = get_logger("flexcore.train")

MODES = ("refuse", "resume", "restart", "auto")
# Outputs of a training run (relative to its folder); patterns are per-epoch files.
TRAIN_OUTPUTS = (
    "model.pt", "checkpoints/checkpoint_last.pt", "checkpoints/checkpoint_epoch*.pt",
    "latents.npy", "latents.star", "latents.cs", "history.json", "loss.png", "latents.png",
    "latents_epoch*.png", "examples.png", "train.json",
)
# Training parameters that may change when a run is resumed.
FREE_KEYS = ("device", "log_every", "extra_epochs")
PREP_FILES = ("particles.star", "particles.mrcs", "consensus.mrc")


def training_fingerprint(cfg: TrainConfig, mesh_path, prep_dir, init_latents=None) -> dict:
    """The record that identifies a run (see the module docstring)."""
    prep_dir = Path(prep_dir)
    return {
        "config": cfg.to_dict(),
        "mesh_sha256": file_sha256(mesh_path),
        "prep_sha256": {name: file_sha256(prep_dir / name) for name in PREP_FILES},
        "init_latents_sha256": file_sha256(init_latents) if init_latents else None,
    }


def checkpoint_differences(state: dict, fingerprint: dict) -> list[str]:
    """What differs between a checkpoint and the run about to start (empty: compatible)."""
    out = []
    old, new = state.get("config", {}), fingerprint["config"]
    for key in new:
        if key not in FREE_KEYS and old.get(key) != new[key]:
            hint = " (to train a run longer, raise extra_epochs instead)" if key == "epochs" else ""
            out.append(f"train.{key} is {old.get(key)!r} there, {new[key]!r} now{hint}")
    if state.get("mesh_sha256") != fingerprint["mesh_sha256"]:
        out.append("the mesh differs (SHA-256)")
    if "prep_sha256" not in state:
        out.append("it records no hash of the prepared particles (an older flexcore wrote it)")
    elif state["prep_sha256"] != fingerprint["prep_sha256"]:
        changed = [k for k in PREP_FILES
                   if state["prep_sha256"].get(k) != fingerprint["prep_sha256"][k]]
        out.append(f"the prepared particles differ ({', '.join(changed)})")
    if state.get("init_latents_sha256") != fingerprint["init_latents_sha256"]:
        out.append("the starting-latents file differs")
    return out


def previous_run_files(out_dir) -> list[Path]:
    """Files of an earlier run in ``out_dir`` (every training output that exists)."""
    out = Path(out_dir)
    found = []
    for name in TRAIN_OUTPUTS:
        if "*" in name:
            found += sorted(out.glob(name))
        elif (out / name).exists():
            found.append(out / name)
    return found


def remove_previous_run(out_dir, reason: str) -> None:
    """Delete the files of an earlier run so none of them sits beside the new run's."""
    files = previous_run_files(out_dir)
    for f in files:
        f.unlink(missing_ok=True)
    if files:
        log.info("starting afresh in %s: %s; removed %d file(s) of the earlier run", out_dir,
                 reason, len(files))


def checkpoint_to_resume(out_dir, fingerprint: dict, on_existing: str) -> tuple[dict | None, Path | None]:
    """Decide what to do with an earlier run in ``out_dir``; return the state to resume
    from and its path (``(None, None)``: start afresh, the earlier run's files removed)."""
    if on_existing not in MODES:
        raise ConfigError(f"on_existing = {on_existing!r}: must be one of {', '.join(MODES)}")
    out = Path(out_dir)
    ck = latest_checkpoint(out / "checkpoints")
    if on_existing == "restart":
        remove_previous_run(out, "asked to restart")
        return None, None
    if ck is None:
        if previous_run_files(out) and on_existing == "refuse":
            raise OutputPathError(out, "holds files of an earlier training run but no checkpoint "
                                       "to continue; start afresh with --restart (removes them) "
                                       "or choose another output folder")
        if on_existing == "resume":
            log.info("--resume: no checkpoint in %s, starting from scratch", out / "checkpoints")
        remove_previous_run(out, "no checkpoint to continue")
        return None, None
    try:
        state = load_checkpoint(ck)
        differences = checkpoint_differences(state, fingerprint)
    except FlexcoreError as exc:
        state, differences = None, [f"the checkpoint cannot be read ({exc})"]
    if on_existing == "refuse":
        if differences:
            raise OutputPathError(ck, f"an earlier training run of a different setup is here "
                                      f"({'; '.join(differences)}): start afresh with --restart "
                                      f"(removes it) or choose another output folder")
        total = fingerprint["config"]["epochs"] + fingerprint["config"]["extra_epochs"]
        raise OutputPathError(ck, f"a compatible checkpoint is here ({state['epoch']} of {total} "
                                  f"epochs done): continue it with --resume, or start afresh with "
                                  f"--restart (removes it and the per-epoch files)")
    if differences:
        if on_existing == "resume":
            raise ConfigError(f"cannot resume {ck}: {'; '.join(differences)} (use --restart to "
                              "start afresh)")
        remove_previous_run(out, f"the checkpoint there is from a different run: "
                                 f"{'; '.join(differences)}")
        return None, None
    return state, ck
