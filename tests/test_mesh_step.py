"""The mesh step end to end: outputs, summary, ChimeraX files, plots and the CLI."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pytest

from flexcore.cli.main import main as cli_main
from flexcore.core.errors import ConfigError
from flexcore.core.io.mrc import write_map
from flexcore.core.mesh import TetMesh, blob_map
from flexcore.core.mesh.solvent import lowpassed
from flexcore.core.mesh.topology import unique_edges
from flexcore.stages.mesh.chimerax import hybrid36
from flexcore.stages.mesh.step import OUTPUTS, run_mesh

N, PSIZE = 40, 2.5


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mesh")
    vol = 2.0 * blob_map(N, [(-6, 1, 0), (7, -2, 3), (0, 8, -4)], [3.0, 2.5, 2.0])
    write_map(tmp / "map.mrc", vol, PSIZE)
    summary = run_mesh(tmp / "map.mrc", tmp / "out", n_cells=8, threshold=0.95,
                       threshold_mode="quantile")
    return tmp, vol, summary


def test_outputs_and_summary(built):
    tmp, vol, s = built
    out = tmp / "out"
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    on_disk = json.loads((out / "mesh_summary.json").read_text())
    assert on_disk["n_cells"] == s["n_cells"] and on_disk["parameters"]["n_cells"] == 8
    level = float(np.quantile(lowpassed(vol, PSIZE, 10.0), 0.95))
    assert s["mask"]["threshold_level"] == pytest.approx(level, rel=1e-6)
    assert s["mask"]["threshold_mode"] == "quantile"
    assert s["lattice"]["tets_per_cube"] == 5 and s["n_cells"] == 5 * s["lattice"]["n_cubes"]
    assert on_disk["step"] == "mesh" and on_disk["flexcore"] and on_disk["time"]
    mesh = TetMesh.load(out / "mesh.npz")
    assert (mesh.n_cells, mesh.n_vertices) == (s["n_cells"], s["n_vertices"])
    assert s["mask_voxels"] == int((mesh.mask > 0.5).sum())
    with mrcfile.open(out / "mask.mrc") as m:
        np.testing.assert_array_equal(m.data, mesh.mask)
        assert float(m.voxel_size.x) == pytest.approx(PSIZE)
    with mrcfile.open(out / "mask_soft.mrc") as m:
        np.testing.assert_array_equal(m.data, mesh.mask_soft)
    assert (out / "mesh_slices.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 0.5 <= mesh.rigidity.min() and mesh.rigidity.max() < 2.0


def test_pdb_places_vertices_over_the_map(built):
    tmp, _, _ = built
    mesh = TetMesh.load(tmp / "out" / "mesh.npz")
    lines = (tmp / "out" / "mesh.pdb").read_text().splitlines()
    atoms = [ln for ln in lines if ln.startswith("HETATM")]
    assert len(atoms) == mesh.n_vertices
    xyz = np.array([[float(ln[30:38]), float(ln[38:46]), float(ln[46:54])] for ln in atoms])
    np.testing.assert_allclose(xyz, (mesh.points + N // 2) * PSIZE, atol=1e-3)
    assert all(ln[76:78] == " C" and ln[17:20] == "VTX" for ln in atoms)
    bonds = set()
    for ln in lines:
        if ln.startswith("CONECT"):
            a = int(ln[6:11])
            for k in range(11, len(ln), 5):
                bonds.add((a, int(ln[k:k + 5])))
    assert bonds == {(i + 1, j + 1) for i, j in unique_edges(mesh.cells)}


def test_cxc_opens_map_and_mesh(built):
    tmp, _, s = built
    text = (tmp / "out" / "mesh.cxc").read_text()
    assert 'open "../map.mrc"' in text and 'open "mesh.pdb"' in text
    assert f"voxelSize {PSIZE:g}" in text and "origin 0,0,0" in text
    assert f"level {s['mask']['threshold_level']:.6g}" in text
    assert "color bfactor #2" in text


def test_hybrid36():
    assert hybrid36(99999, 5) == "99999" and hybrid36(100000, 5) == "A0000"
    assert hybrid36(9999, 4) == "9999" and hybrid36(10000, 4) == "A000"
    assert hybrid36(1, 5) == "    1"


def test_cli(built, capsys):
    tmp, _, _ = built
    rc = cli_main(["mesh", str(tmp / "map.mrc"), "-o", str(tmp / "cli"), "--n-cells", "8",
                   "--threshold", "0.4", "--stiffen-low-density"])
    assert rc == 0
    s = json.loads((tmp / "cli" / "mesh_summary.json").read_text())
    assert s["parameters"]["stiffen_low_density"] is True and s["mask"]["threshold_level"] == 0.4
    rc = cli_main(["mesh", str(tmp / "map.mrc"), "-o", str(tmp / "bad"), "--connections", "1>2"])
    assert rc == 1
    assert "need a segmentation" in capsys.readouterr().err


def test_conflicting_options_are_refused(built):
    tmp, _, _ = built
    with pytest.raises(ConfigError, match="cannot be combined with mask"):
        run_mesh(tmp / "map.mrc", tmp / "x", cryosparc_mesh=tmp / "m.pkl", mask=tmp / "map.mrc")
    with pytest.raises(ConfigError, match="mesh_type"):
        run_mesh(tmp / "map.mrc", tmp / "x", mesh_type="voronoi")
    with pytest.raises(ConfigError, match="segmentation builds its own"):
        run_mesh(tmp / "map.mrc", tmp / "x", segmentation=tmp / "s.seg", mesh_type="delaunay")
    assert not (tmp / "x").exists()
