"""Reconstruction outputs: Guinier B-factor, sharpening, FSC table/plot, L-BFGS table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flexcore.core.fourier import rfft_radius_3d
from flexcore.core.fsc_outputs import guinier_bfactor, plot_fsc, radial_amplitude, sharpen, write_fsc_table
from flexcore.stages.reconstruct.outputs import write_lbfgs_table


def blurred_map(n: int, pixel_size_A: float, bfactor: float, seed: int = 0) -> np.ndarray:
    """White noise whose amplitudes are multiplied by ``exp(−B s²/4)``."""
    g = torch.Generator().manual_seed(seed)
    f = torch.fft.rfftn(torch.randn((n, n, n), generator=g, dtype=torch.float64))
    s2 = (rfft_radius_3d(n, dtype=torch.float64) / pixel_size_A) ** 2
    return torch.fft.irfftn(f * torch.exp(-bfactor * s2 / 4.0), s=(n, n, n)).numpy()


def test_guinier_fit_recovers_a_known_bfactor():
    vol = blurred_map(64, 1.0, 120.0)
    b, rng, shells = guinier_bfactor(vol, 1.0, high_res_A=3.0)
    assert b == pytest.approx(120.0, rel=0.05)
    assert rng == (10.0, 3.0) and shells >= 10


def test_guinier_fit_widens_its_range_and_gives_up_cleanly():
    vol = blurred_map(32, 3.0, 200.0)
    b, rng, shells = guinier_bfactor(vol, 3.0, high_res_A=9.0)  # few shells in 10-9 Å
    assert rng[0] in (15.0, 20.0) and shells >= 3 and b == pytest.approx(200.0, rel=0.35)
    b, _, shells = guinier_bfactor(vol, 3.0, high_res_A=19.0)
    assert shells < 3 and b == 0.0


def test_sharpening_restores_amplitudes_and_lowpasses():
    n, psize, b = 48, 1.5, 100.0
    vol = blurred_map(n, psize, b)
    fsc = np.ones(n // 2 + 1)
    sharp, rec = sharpen(vol, psize, fsc, resolution_A=4.0, bfactor=None)
    assert rec["bfactor_source"] == "guinier fit"
    assert rec["bfactor_A2"] == pytest.approx(b, rel=0.1)
    amp = radial_amplitude(sharp)
    s = np.arange(n // 2 + 1) / (n * psize)
    flat = amp[(s > 0.1) & (s < 0.2)]
    assert flat.std() / flat.mean() < 0.15  # the decay is gone below the low-pass
    assert amp[s > 1 / 3.5].max() < 1e-6 * amp[1:].max()  # nothing beyond the cut-off


def test_negative_fit_is_not_applied_and_given_bfactor_is():
    n, psize = 32, 2.0
    vol = blurred_map(n, psize, -80.0)  # amplitudes rise with frequency
    _, rec = sharpen(vol, psize, np.ones(n // 2 + 1), 5.0, None)
    assert rec["bfactor_A2"] == 0.0 and rec["bfactor_source"].startswith("none")
    _, rec = sharpen(vol, psize, np.ones(n // 2 + 1), 5.0, 75.0)
    assert rec == {"bfactor_A2": 75.0, "bfactor_source": "given", "lowpass_A": 5.0}


def test_fsc_table_plot_and_lbfgs_table(tmp_path):
    curves = {"flex_masked": np.linspace(1, 0, 17), "noflex_masked": np.linspace(1, -0.1, 17)}
    write_fsc_table(tmp_path / "fsc.tsv", curves, 32, 2.0)
    lines = (tmp_path / "fsc.tsv").read_text().splitlines()
    assert lines[0] == "shell\tfrequency_1/A\tresolution_A\tfsc_flex_masked\tfsc_noflex_masked"
    assert lines[1].split("\t")[:3] == ["0", "0.000000", "inf"]
    assert lines[17].split("\t")[:3] == ["16", "0.250000", "4.0000"]
    plot_fsc(tmp_path / "fsc.png", curves, {"flex_masked": 4.5, "noflex_masked": 5.0}, 32, 2.0,
             "flex 0.143: 4.50 Å, rigid: 5.00 Å")
    assert (tmp_path / "fsc.png").read_bytes()[:4] == b"\x89PNG"
    hist = [{"iteration": 0, "objective": 10.0, "grad_norm": 2.0, "step": 0.0, "step_norm": 0.0,
             "direction": "start", "seconds": 0.1},
            {"iteration": 1, "objective": 8.5, "grad_norm": 1.0, "step": 0.3, "step_norm": 0.6,
             "direction": "steepest", "seconds": 0.2}]
    write_lbfgs_table(tmp_path / "lbfgs.tsv", {"flex_A": hist})
    rows = [r.split("\t") for r in (tmp_path / "lbfgs.tsv").read_text().splitlines()]
    assert rows[0][:3] == ["solve", "iteration", "objective"]
    assert rows[2][:3] == ["flex_A", "1", "8.5"] and rows[2][6] == "steepest"
