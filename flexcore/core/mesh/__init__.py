"""Tetrahedral meshes for 3DFlex: build, locate voxels, weight, segment, import, export.

Frame: vertex positions and voxel coordinates are ``(x, y, z)`` in voxels relative to the box
centre ``N // 2``; volumes are ``[z, y, x]``. See docs/mesh.md.

Public API
----------
``TetMesh`` (dataclass: points, cells, rigidity, box, pixel_size_A, tet_map, mask, mask_soft,
segments, fuses; ``voxel_data``, ``rest_edges_inverse``, ``upscale``, ``save``/``load``),
``export_cryosparc_pickle``/``import_cryosparc_pickle``,
``locate_voxels`` (the one voxel → tet rasteriser), ``regular_tet_mesh``, ``segmented_mesh``,
``mesh_from_arrays``, ``delaunay_mesh``, ``rigidity_weights``, ``mask_from_map``,
``mask_from_file``, ``read_segmentation``, ``parse_connections``, ``validate_connections``.
"""

from .core import TetMesh, mesh_from_arrays
from .custom import delaunay_mesh, load_custom_arrays
from .interop import (
    CANDIDATE_CONVENTIONS,
    FLEXCORE_CONVENTION,
    PointConvention,
    detect_point_convention,
    export_cryosparc_pickle,
    import_cryosparc_pickle,
)
from .locate import barycentric_coordinates, locate_voxels, tet_volumes
from .regular import regular_mesh, regular_tet_mesh
from .seg_file import read_label_map, read_segger, read_segmentation
from .segments import parse_connections, segmented_mesh, validate_connections
from .solvent import SolventMask, mask_from_file, mask_from_map
from .synthetic import blob_map
from .weights import rigidity_weights

__all__ = [
    "TetMesh", "mesh_from_arrays", "delaunay_mesh", "load_custom_arrays",
    "CANDIDATE_CONVENTIONS", "FLEXCORE_CONVENTION", "PointConvention",
    "detect_point_convention", "export_cryosparc_pickle", "import_cryosparc_pickle",
    "barycentric_coordinates", "locate_voxels", "tet_volumes", "regular_mesh",
    "regular_tet_mesh", "read_label_map", "read_segger", "read_segmentation",
    "parse_connections", "segmented_mesh", "validate_connections", "SolventMask",
    "mask_from_file", "mask_from_map", "blob_map", "rigidity_weights",
]
