"""The forward model at a working box: canonical map → convected projections → spectra.

Training runs coarse-to-fine: while the resolution limit is low, images and the canonical
map are Fourier-cropped to a smaller working box, and the mesh is rebuilt there (same
cells, vertices scaled), so early epochs splat 8× fewer voxels. The parameters (canonical
map, flow) always live at the training box.
"""

from __future__ import annotations

import torch

from ...core.fourier import band_limit_resample_3d, crop_rfft2
from ...core.model.image_model import ImageFormation
from ...core.ops import pull_project_reference, splat_project


class Renderer:
    """Forward model on a ``box`` grid for a mesh built at ``train_box``.

    Parameters
    ----------
    mesh : a :class:`flexcore.core.mesh.TetMesh` at the training box.
    box : working box (≤ training box).
    pixel_size_A : pixel size at the training box.
    noise_power : optional per-shell noise power at the training box (whitening).
    """

    def __init__(self, mesh, box: int, pixel_size_A: float, device, noise_power=None,
                 convection: str = "push"):
        self.train_box = mesh.box
        self.box = box
        self.scale = box / mesh.box
        self.device = device
        self.convection = convection
        work_mesh = mesh if box == mesh.box else mesh.upscale(box)
        self.geometry = work_mesh.voxel_tensors(device)
        self.soft = self.geometry.gather(torch.as_tensor(work_mesh.mask_soft, device=device))
        noise = None
        if noise_power is not None:
            n_shell = box // 2 + 1
            noise = torch.as_tensor(noise_power[:n_shell], dtype=torch.float32)
        self.model = ImageFormation(box, pixel_size_A / self.scale, device, noise_power=noise)

    @property
    def n_voxels(self) -> int:
        return self.geometry.n_voxels

    def canonical(self, volume: torch.Tensor, k_max: float) -> torch.Tensor:
        """The canonical map on this grid, band-limited at ``k_max`` (cycles per training
        pixel), ``(box, box, box)``. Differentiable w.r.t. ``volume``."""
        return band_limit_resample_3d(volume, self.box, k_max / self.scale)

    def densities(self, canonical: torch.Tensor) -> torch.Tensor:
        """Mask-voxel masses ``(M,)``: the soft-masked map scaled by ``train_box / box`` so
        projections keep the images' grey level after Fourier cropping."""
        return self.geometry.gather(canonical) * self.soft / self.scale

    def working_displacements(self, displacements: torch.Tensor) -> torch.Tensor:
        """Training-box voxel displacements in voxels of this box."""
        return displacements if self.scale == 1.0 else displacements * self.scale

    def project(self, canonical: torch.Tensor, displacements: torch.Tensor | None,
                rotations: torch.Tensor, rows: torch.Tensor | None = None,
                working: bool = False) -> torch.Tensor:
        """Projections ``(B, box, box)``; ``displacements`` in training-box voxels (in this
        box's with ``working``, from :meth:`working_displacements`), per image or, with
        ``rows (B,)``, a table image ``b`` reads row ``rows[b]`` of."""
        disp = displacements
        if disp is not None and not working:
            disp = self.working_displacements(disp)
        if self.convection == "pull":
            if rows is not None:
                disp = disp[rows]
            return pull_project_reference(canonical * self.soft_volume(), self.geometry, disp,
                                          rotations, self.box) / self.scale
        return splat_project(self.densities(canonical), self.geometry, disp, rotations, self.box,
                             displacement_rows=rows)

    def soft_volume(self) -> torch.Tensor:
        return self.geometry.scatter(self.soft)

    def spectra(self, canonical, displacements, rotations, ctf, shifts_px) -> torch.Tensor:
        """Model spectra ``(B, box, box//2+1)`` (CTF and shifts at this box)."""
        proj = self.project(canonical, displacements, rotations)
        return self.model.spectra(proj, ctf, shifts_px)

    def filtered_spectra(self, canonical, displacements, rotations, filters, rows=None,
                         working: bool = False) -> torch.Tensor:
        """:meth:`spectra` with the per-image factors precomputed
        (:meth:`ImageFormation.filters`); ``rows`` and ``working`` as in :meth:`project`."""
        proj = self.project(canonical, displacements, rotations, rows, working)
        return torch.fft.rfft2(proj) * filters

    def observed(self, images: torch.Tensor) -> torch.Tensor:
        """Spectra of training-box images cropped to this box ``(B, box, box//2+1)``."""
        return crop_rfft2(torch.fft.rfft2(images), self.box)

    def noise_var(self, noise_var_train: float) -> float:
        """Pixel noise variance on this grid (Fourier cropping scales it by ``(box/D)²``)."""
        return noise_var_train * self.scale**2
