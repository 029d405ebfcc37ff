"""Bad particle input fails with an InputFileError naming the file and the problem."""

from __future__ import annotations

import numpy as np
import pytest

from flexcore.core.errors import InputFileError
from flexcore.core.io import (
    ImageSource,
    OpticsGroup,
    ParticleTable,
    read_particles,
    write_cs,
    write_stack,
    write_star,
)

OPTICS = ["data_optics", "loop_", "_rlnOpticsGroup", "_rlnVoltage", "_rlnSphericalAberration",
          "_rlnAmplitudeContrast", "_rlnImagePixelSize", "_rlnImageSize",
          "1 300 2.7 0.1 1.5 32", ""]
PARTICLE_COLUMNS = ["rlnImageName", "rlnOpticsGroup", "rlnDefocusU", "rlnDefocusV",
                    "rlnDefocusAngle", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]


def write_star_text(path, rows, columns=PARTICLE_COLUMNS, optics=OPTICS):
    lines = list(optics) + ["data_particles", "loop_"] + [f"_{c}" for c in columns]
    lines += [" ".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def good_rows(n=3, stack="stack.mrcs"):
    return [[f"{i + 1}@{stack}", 1, 10000, 9500, 30, 10 * i, 20, 30] for i in range(n)]


def tiny_table(n=4) -> ParticleTable:
    return ParticleTable(
        rotations=np.repeat(np.eye(3)[None], n, axis=0), shifts_A=np.zeros((n, 2)),
        defocus_u_A=np.full(n, 1e4), defocus_v_A=np.full(n, 1e4),
        defocus_angle_deg=np.zeros(n), phase_shift_deg=np.zeros(n), bfactor_A2=np.zeros(n),
        ctf_scale=np.ones(n), optics_group=np.zeros(n, dtype=np.int64),
        optics=[OpticsGroup("g", 1.0, 16, 300.0, 2.7, 0.1)],
        image_paths=np.asarray(["s.mrcs"] * n, dtype=object), image_indices=np.arange(n),
        half_set=np.zeros(n, dtype=np.int8),
    )


def test_missing_particle_columns_are_named(tmp_path):
    columns = [c for c in PARTICLE_COLUMNS if c not in ("rlnDefocusU", "rlnDefocusAngle")]
    rows = [[r[i] for i, c in enumerate(PARTICLE_COLUMNS) if c in columns] for r in good_rows()]
    path = write_star_text(tmp_path / "nodefocus.star", rows, columns)
    with pytest.raises(InputFileError, match=r"nodefocus\.star.*rlnDefocusU, rlnDefocusAngle"):
        read_particles(path)


def test_missing_image_name_is_named(tmp_path):
    rows = [r[1:] for r in good_rows()]
    path = write_star_text(tmp_path / "noname.star", rows, PARTICLE_COLUMNS[1:])
    with pytest.raises(InputFileError, match=r"noname\.star.*missing column.*rlnImageName"):
        read_particles(path)


def test_missing_optics_columns_are_named(tmp_path):
    optics = ["data_optics", "loop_", "_rlnOpticsGroup", "_rlnSphericalAberration",
              "_rlnImagePixelSize", "1 2.7 1.5", ""]
    path = write_star_text(tmp_path / "optics.star", good_rows(), optics=optics)
    with pytest.raises(InputFileError,
                       match=r"optics\.star.*rlnVoltage, rlnAmplitudeContrast in data_optics"):
        read_particles(path)


def test_missing_cs_fields_are_named(tmp_path):
    arr = np.zeros(3, dtype=[("uid", "<u8"), ("blob/path", "S8"), ("blob/idx", "<u4")])
    path = tmp_path / "noctf.cs"
    with open(path, "wb") as f:
        np.save(f, arr)
    with pytest.raises(InputFileError, match=r"noctf\.cs.*blob/shape.*ctf/df1_A.*prefixes: blob"):
        read_particles(path)


def test_unknown_optics_group(tmp_path):
    rows = good_rows()
    rows[1][1] = 4
    path = write_star_text(tmp_path / "group.star", rows)
    with pytest.raises(InputFileError, match=r"group\.star.*optics group\(s\) \[4\.0\]"):
        read_particles(path)


def test_non_numeric_value_is_located(tmp_path):
    rows = good_rows()
    rows[2][3] = "abc"
    path = write_star_text(tmp_path / "text.star", rows)
    with pytest.raises(InputFileError, match=r"text\.star.*rlnDefocusV.*'abc' at row 3"):
        read_particles(path)


@pytest.mark.parametrize("name", ["0@stack.mrcs", "x@stack.mrcs", "1.5@stack.mrcs", "3@"])
def test_bad_image_names(tmp_path, name):
    rows = good_rows()
    rows[1][0] = name
    path = write_star_text(tmp_path / "names.star", rows)
    with pytest.raises(InputFileError, match=r"names\.star.*rlnImageName.*row 2.*N@stack"):
        read_particles(path)


@pytest.mark.parametrize("column", ["rlnDefocusU", "rlnAngleTilt"])
def test_nan_in_defocus_or_angle(tmp_path, column):
    rows = good_rows(4)
    rows[2][PARTICLE_COLUMNS.index(column)] = "nan"
    path = write_star_text(tmp_path / "nan.star", rows)
    what = "defocus U" if column == "rlnDefocusU" else "rotations"
    with pytest.raises(InputFileError, match=rf"nan\.star.*{what} is NaN.*1 particle.*row 3"):
        read_particles(path)


def test_nan_in_cs_defocus(tmp_path):
    arr = np.zeros(2, dtype=[("blob/path", "S8"), ("blob/idx", "<u4"),
                             ("blob/shape", "<u4", (2,)), ("blob/psize_A", "<f4")]
                   + [(f"ctf/{k}", "<f4") for k in ("df1_A", "df2_A", "df_angle_rad",
                                                     "accel_kv", "cs_mm", "amp_contrast")])
    arr["blob/path"], arr["blob/shape"], arr["blob/psize_A"] = b"s.mrcs", 16, 1.0
    arr["ctf/df2_A"][1] = np.nan
    path = tmp_path / "nan.cs"
    with open(path, "wb") as f:
        np.save(f, arr)
    with pytest.raises(InputFileError, match=r"nan\.cs.*defocus V is NaN.*row 2"):
        read_particles(path)


def test_missing_stack_file(tmp_path):
    table = read_particles(write_star_text(tmp_path / "nostack.star", good_rows()))
    with pytest.raises(InputFileError, match=r"nostack\.star.*image stack 'stack\.mrcs' not found"):
        ImageSource(table).check_all_present()


def test_stack_shorter_than_the_indices(tmp_path):
    write_stack(tmp_path / "short.mrcs", np.zeros((2, 32, 32), np.float32), 1.5)
    table = read_particles(write_star_text(tmp_path / "p.star", good_rows(3, "short.mrcs")))
    with pytest.raises(InputFileError, match=r"short\.mrcs.*asks for image 3.*holds only 2"):
        ImageSource(table).check_all_present()


def test_stack_box_differs_from_image_size(tmp_path):
    write_stack(tmp_path / "big.mrcs", np.zeros((3, 40, 40), np.float32), 1.5)
    table = read_particles(write_star_text(tmp_path / "p.star", good_rows(3, "big.mrcs")))
    with pytest.raises(InputFileError, match=r"big\.mrcs.*images are 40 px.*\[32\] px"):
        ImageSource(table).read([0])


def test_three_dimensional_particles_are_rejected(tmp_path):
    optics = OPTICS[:-2] + ["_rlnImageDimensionality", "1 300 2.7 0.1 1.5 32 3", ""]
    path = write_star_text(tmp_path / "tomo.star", good_rows(), optics=optics)
    with pytest.raises(InputFileError, match=r"tomo\.star.*rlnImageDimensionality"):
        read_particles(path)


def test_empty_particle_loop(tmp_path):
    path = write_star_text(tmp_path / "none.star", [])
    with pytest.raises(InputFileError, match=r"none\.star.*no particles"):
        read_particles(path)


@pytest.mark.parametrize("name", ["empty.star", "empty.cs", "empty.dat"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(InputFileError, match=rf"{name}.*empty"):
        read_particles(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match=r"absent\.star.*does not exist"):
        read_particles(tmp_path / "absent.star")


def test_text_file_that_is_neither_format(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("particles from Tuesday\n1 2 3\n")
    with pytest.raises(InputFileError, match=r"notes\.txt.*neither a STAR.*nor.*\.cs"):
        read_particles(path)


def test_wrong_content_for_the_extension(tmp_path):
    star = tmp_path / "fake.star"
    star.write_text("just words, no blocks\n")
    with pytest.raises(InputFileError, match=r"fake\.star.*no data_ block"):
        read_particles(star)
    cs = tmp_path / "fake.cs"
    cs.write_text("data_particles\nloop_\n_rlnImageName\n1@a.mrcs\n")
    with pytest.raises(InputFileError, match=r"fake\.cs.*NumPy magic"):
        read_particles(cs)


def test_truncated_cs(tmp_path):
    arr = np.zeros(100, dtype=[("blob/path", "S8"), ("blob/idx", "<u4")])
    path = tmp_path / "cut.cs"
    with open(path, "wb") as f:
        np.save(f, arr)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(InputFileError, match=r"cut\.cs.*cannot be read.*truncated"):
        read_particles(path)


def test_content_sniffing_for_unknown_extensions(tmp_path):
    star = write_star_text(tmp_path / "particles.meta", good_rows())
    assert read_particles(star).source_format == "relion31"
    cs = tmp_path / "particles.bin"
    write_cs(tiny_table(), cs)
    assert read_particles(cs).source_format == "cryosparc"


def _fail_half_way(target_name: str):
    def fake(*args, **kwargs):
        handle = next((a for a in args if hasattr(a, "write")), None)
        path = next((a for a in args if hasattr(a, "suffix")), None)
        if handle is not None:
            handle.write(b"\x93NUMPY partial")
        else:
            path.write_text("data_optics\npartial")
        raise OSError(f"disk full while writing {target_name}")
    return fake


@pytest.mark.parametrize("suffix", [".star", ".cs"])
def test_failed_write_leaves_no_file(tmp_path, monkeypatch, suffix):
    target = tmp_path / f"out{suffix}"
    if suffix == ".star":
        monkeypatch.setattr("flexcore.core.io.star.starfile.write", _fail_half_way(target.name))
        writer = write_star
    else:
        monkeypatch.setattr("flexcore.core.io.cryosparc.np.save", _fail_half_way(target.name))
        writer = write_cs
    with pytest.raises(OSError, match="disk full"):
        writer(tiny_table(), target)
    assert list(tmp_path.iterdir()) == []

    # An existing file under the final name is left untouched.
    target.write_text("previous result")
    with pytest.raises(OSError, match="disk full"):
        writer(tiny_table(), target)
    assert target.read_text() == "previous result"
    assert list(tmp_path.iterdir()) == [target]


def test_extra_columns_of_the_wrong_length_are_refused(tmp_path):
    with pytest.raises(ValueError, match="flexLatent1"):
        write_star(tiny_table(4), tmp_path / "x.star", extra_columns={"flexLatent1": np.ones(3)})
    with pytest.raises(ValueError, match="components_mode_0/value"):
        write_cs(tiny_table(4), tmp_path / "x.cs",
                 extra_fields={"components_mode_0/value": np.ones(5, np.float32)})
    assert not (tmp_path / "x.star").exists() and not (tmp_path / "x.cs").exists()


def test_cs_export_needs_a_known_image_size(tmp_path):
    table = tiny_table()
    table.optics[0].image_size = 0
    table.source_path = str(tmp_path / "r30.star")
    with pytest.raises(InputFileError, match=r"r30\.star.*image size unknown.*blob/shape"):
        write_cs(table, tmp_path / "out.cs")
    assert not (tmp_path / "out.cs").exists()
