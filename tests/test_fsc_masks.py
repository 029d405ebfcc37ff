"""FSC and masks behave as their definitions say."""

import numpy as np
import pytest
import torch

from flexcore.core.fourier import lowpass_volume
from flexcore.core.fsc import fsc_curve, resolution_at
from flexcore.core.masks import sphere_mask, threshold_mask


def test_fsc_of_identical_maps_is_one_and_of_independent_noise_near_zero(rng):
    a = rng.normal(size=(32, 32, 32))
    np.testing.assert_allclose(fsc_curve(a, a)[1:], 1.0, atol=1e-10)
    b = rng.normal(size=(32, 32, 32))
    assert np.abs(fsc_curve(a, b)[4:]).max() < 0.15


def test_fsc_falls_where_a_low_pass_cuts():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(48, 48, 48)).astype(np.float32)
    b = a + 0.0
    lp = lowpass_volume(torch.from_numpy(a), resolution_A=8.0, pixel_size_A=1.0, edge_shells=0.5)
    noise = rng.normal(size=a.shape).astype(np.float32)
    # shells below 8 Å (48/8 = 6 shells) agree, above the low-passed copy has only noise
    fsc = fsc_curve(lp.numpy() + 0.01 * noise, b)
    assert fsc[1:5].min() > 0.95 and np.abs(fsc[9:]).max() < 0.2
    res = resolution_at(fsc, 0.143, 1.0)
    assert 6.5 < res < 8.5


def test_resolution_reads_nyquist_when_fsc_never_drops():
    assert resolution_at(np.ones(33), 0.143, 1.5) == pytest.approx(3.0)


def test_masked_fsc_ignores_what_the_mask_excludes(rng):
    a = rng.normal(size=(32, 32, 32))
    b = a.copy()
    b[:, :, :8] = rng.normal(size=(32, 32, 8))  # differ only outside the mask
    m = np.zeros_like(a)
    m[:, :, 12:] = 1.0
    assert fsc_curve(a, b, mask=m)[1:].min() > 0.999
    assert fsc_curve(a, b)[1:].min() < 0.99


def test_sphere_mask_radius_and_soft_edge():
    m = sphere_mask(32, 8.0, soft_edge_px=4.0)
    assert m[16, 16, 16] == 1.0 and m[16, 16, 16 + 8] == 1.0
    assert 0.0 < m[16, 16, 16 + 10] < 1.0 and m[16, 16, 16 + 13] == 0.0


def test_threshold_mask_dilates_and_pads():
    vol = np.zeros((40, 40, 40), np.float32)
    vol[18:22, 18:22, 18:22] = 1.0
    hard, soft = threshold_mask(vol, 0.5, pixel_size_A=1.0, lowpass_A=None, dilate_A=2.0,
                                soft_edge_A=3.0)
    assert hard[20, 20, 23] == 1.0 and hard[20, 20, 25] == 0.0  # 2 voxels of dilation
    assert soft[20, 20, 23] == 1.0 and 0 < soft[20, 20, 25] < 1 and soft[20, 20, 28] == 0
    with pytest.raises(ValueError, match="threshold"):
        threshold_mask(vol, 5.0, pixel_size_A=1.0, lowpass_A=None)


def test_fsc_auc_is_half_for_a_perfect_map_and_near_zero_for_noise(rng):
    from flexcore.core.fsc import fsc_auc

    a = rng.normal(size=(32, 32, 32))
    assert fsc_auc(fsc_curve(a, a)) == pytest.approx(15 / 32, abs=1e-9)  # (N/2 - 1) / N
    b = rng.normal(size=(32, 32, 32))
    assert abs(fsc_auc(fsc_curve(a, b)) - 0.5 / 32) < 0.02  # only shell 0, counted as 1
    assert np.isnan(fsc_auc(np.array([1.0, np.nan, 0.5])))
