"""``prep.json``: what ``flexcore prep`` hands to the later stages, as a typed record.

Training and reconstruction read sizes, pixel sizes, the contrast sign and scale, the noise
level and the link to the full-resolution particles from here, never by string keys. The
file also carries the step's provenance (versions, command, parameters, time), which
:meth:`PrepInfo.read` leaves aside.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .errors import InputFileError
from .utils.provenance import write_provenance

FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class PrepInfo:
    """The prepared particles' record (one ``prep.json``).

    Attributes
    ----------
    source_particles, source_map : absolute paths of the user's particle file and map.
    n_particles : prepared particles (rows of ``particles.star``).
    original_box, original_pixel_size_A : the user's images (px, Å/px).
    crop_box : real-space crop before Fourier cropping (px at the original pixel size);
        the high-resolution reconstruction's box.
    train_box, train_pixel_size_A : the training grid (px, Å/px).
    image_sign : ±1 applied to the user's images (−1 when their contrast was inverted).
    image_scale : least-squares grey-level scale of the images against consensus projections.
    noise_variance : white-noise pixel variance of the residual at the training box.
    noise_power : residual noise power per Fourier shell at the training box, relative to
        ``noise_variance`` (``train_box // 2 + 1`` values).
    half_sets : where the half-set split came from (``"input"`` or ``"random (seed S)"``).
    half_counts : particles in half sets 0 and 1.
    map_correlation : correlation of the particles with the consensus map's projections.
    map_match_score : that correlation over its spread between unrelated image/projection
        pairs (how many times chance; see ``docs/conventions.md``).
    project_dir : the RELION/cryoSPARC project folder image paths are relative to (None:
        searched above the particle file).
    seconds : wall time of the prep step.
    """

    source_particles: str
    source_map: str
    n_particles: int
    original_box: int
    original_pixel_size_A: float
    crop_box: int
    train_box: int
    train_pixel_size_A: float
    image_sign: float
    image_scale: float
    noise_variance: float
    noise_power: tuple[float, ...]
    half_sets: str
    half_counts: tuple[int, int]
    map_correlation: float | None = None
    map_match_score: float | None = None
    project_dir: str | None = None
    seconds: float = 0.0
    format_version: int = FORMAT_VERSION

    @property
    def train_nyquist_A(self) -> float:
        return 2.0 * self.train_pixel_size_A

    def to_dict(self) -> dict:
        """JSON-ready fields, in the order ``prep.json`` lists them."""
        d = dataclasses.asdict(self)
        d["noise_power"] = list(self.noise_power)
        d["half_counts"] = list(self.half_counts)
        d["train_nyquist_A"] = self.train_nyquist_A
        return d

    @classmethod
    def from_dict(cls, record: dict, source="prep.json") -> PrepInfo:
        """Build from a ``prep.json`` record (extra keys such as provenance are ignored);
        raise :class:`InputFileError` naming ``source`` and the first missing field."""
        version = int(record.get("format_version", 1))  # files older than the field are v1
        if version != FORMAT_VERSION:
            raise InputFileError(source, f"prep.json format version {version} is not supported "
                                         f"(this flexcore reads version {FORMAT_VERSION}); run "
                                         "`flexcore prep` again")
        values = {}
        for f in dataclasses.fields(cls):
            if f.name == "format_version":
                continue
            if f.name not in record:
                if f.default is not dataclasses.MISSING:
                    continue
                raise InputFileError(source, f"has no {f.name!r}: not written by flexcore prep, "
                                             "or damaged; run `flexcore prep` again")
            values[f.name] = record[f.name]
        values["noise_power"] = tuple(float(v) for v in values["noise_power"])
        values["half_counts"] = tuple(int(v) for v in values["half_counts"])
        return cls(**values)

    @classmethod
    def read(cls, prep_dir) -> PrepInfo:
        """``prep_dir/prep.json`` (or the file itself), with a clear error when it is missing
        or is not a prep record."""
        path = Path(prep_dir)
        if path.is_dir() or path.suffix != ".json":
            path = path / "prep.json"
        if not path.exists():
            raise InputFileError(path, "not found: run `flexcore prep` first")
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputFileError(path, f"cannot be read as JSON ({exc})") from exc
        if not isinstance(record, dict):
            raise InputFileError(path, "is not a prep record (expected a JSON object)")
        return cls.from_dict(record, path)

    def write(self, path, params: dict | None = None) -> dict:
        """Write ``prep.json`` atomically: provenance (with ``params``) then the fields."""
        return write_provenance(path, "prep", params, extra=self.to_dict())

