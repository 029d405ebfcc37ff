"""Training parameters (CryoSPARC 3D Flex Training defaults) and their validation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .errors import ConfigError


@dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults follow CryoSPARC's ``flex_train``
    except the three priors' strengths (``rigidity_lambda``, ``noise_sigma``,
    ``centering_lambda``): our negative log-likelihood is in natural units, so CryoSPARC's
    values do not carry over; ours were calibrated against the Bayes limit of a simulated
    data set (docs/analysis.md, "How close to the limit").

    Units: learning rates per Adam step; ``rigidity_lambda`` multiplies the per-image
    rigidity penalty against the per-image negative log-likelihood; resolutions as
    fractions of the training-box Nyquist frequency.
    """

    latent_dim: int = 2
    n_layers: int = 6
    hidden_units: int = 64
    epochs: int = 16
    extra_epochs: int = 0
    batch_size: int = 64
    lr_flow_start: float = 0.005
    lr_flow_end: float = 0.0005
    lr_density_start: float = 0.01
    lr_density_end: float = 0.002
    rigidity_lambda: float = 0.5  # CryoSPARC: 2.0
    noise_sigma: float = 0.0  # CryoSPARC: 0.15
    centering_lambda: float = 2.0  # CryoSPARC: 20
    centering_power: float = 4.0
    latent_limit: float = 1.5
    init_latents: str = "gradient-pca"
    init_latent_sd: float = 0.6
    res_start_frac: float = 0.25
    res_start_A: float = 20.0
    res_end_frac: float = 0.8
    res_ramp_frac: float = 0.6
    n_candidates: int = 8
    candidate_sigma: float = 0.3
    grid_points: int = 9
    grid_low_res: bool = True
    latent_steps: int = 2
    latent_lr: float = 0.1
    validation_fraction: float = 0.05
    rigidity_subsample: int = 32
    multires: bool = True
    whiten: bool = False
    freeze_latents: bool = False
    images_float16: bool = False
    amp: bool = False
    convection: str = "push"
    device: str = "auto"
    seed: int = 0
    log_every: int = 20
    strain_threshold: float = 1.5

    def check_types(self) -> None:
        """Raise :class:`ConfigError` naming the first parameter whose value has the wrong
        type (``epochs=two``, a list from a YAML file, ``true`` for a number, …)."""
        for f in fields(self):
            value = getattr(self, f.name)
            kind = type(f.default)
            if kind is bool:
                ok, what = isinstance(value, bool), "true or false"
            elif kind is int:
                ok, what = isinstance(value, int) and not isinstance(value, bool), "an integer"
            elif kind is float:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                what = "a number"
            else:
                ok, what = isinstance(value, str), "text"
            if not ok:
                got = {list: "a list", dict: "a mapping", type(None): "nothing (null)"}.get(
                    type(value), f"{type(value).__name__} {value!r}")
                raise ConfigError(f"train.{f.name} = {value!r}: must be {what}, got {got}")

    def validate(self) -> TrainConfig:
        """Raise :class:`ConfigError` naming the first bad parameter; return self."""
        self.check_types()

        def need(cond, name, what):
            if not cond:
                raise ConfigError(f"train.{name} = {getattr(self, name)!r}: {what}")

        need(isinstance(self.latent_dim, int) and self.latent_dim >= 1, "latent_dim",
             "must be an integer ≥ 1")
        need(self.n_layers >= 2, "n_layers", "must be ≥ 2 (hidden + output)")
        need(self.hidden_units >= 1, "hidden_units", "must be ≥ 1")
        need(self.epochs >= 1, "epochs", "must be ≥ 1")
        need(self.extra_epochs >= 0, "extra_epochs", "must be ≥ 0")
        need(self.batch_size >= 1, "batch_size", "must be ≥ 1")
        for name in ("lr_flow_start", "lr_flow_end", "lr_density_start", "lr_density_end",
                     "latent_lr"):
            need(getattr(self, name) > 0, name, "must be positive")
        for name in ("rigidity_lambda", "noise_sigma", "centering_lambda"):
            need(getattr(self, name) >= 0, name, "must be ≥ 0")
        need(self.centering_power > 0, "centering_power", "must be positive")
        need(self.latent_limit > 0, "latent_limit", "must be positive")
        need(0 < self.res_start_frac <= self.res_end_frac <= 1.0, "res_end_frac",
             "needs 0 < res_start_frac ≤ res_end_frac ≤ 1")
        need(0 < self.res_ramp_frac <= 1, "res_ramp_frac", "must be in (0, 1]")
        need(self.n_candidates >= 0 and self.latent_steps >= 0, "n_candidates",
             "candidates and latent steps must be ≥ 0")
        need(0 <= self.validation_fraction < 0.5, "validation_fraction", "must be in [0, 0.5)")
        need(self.convection in ("push", "pull"), "convection", "must be 'push' or 'pull'")
        need(self.init_latents in ("gradient-pca", "random"), "init_latents",
             "must be 'gradient-pca' or 'random'")
        need(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"), "device",
             "must be auto, cpu, cuda or cuda:N")
        need(self.strain_threshold > 1.0, "strain_threshold", "must be > 1 (1 = rigid)")
        return self

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.extra_epochs

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown training parameter(s): {', '.join(unknown)}")
        return cls(**d)
