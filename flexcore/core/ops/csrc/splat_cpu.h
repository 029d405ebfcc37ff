// Push + splat projection on the CPU: the per-work-item kernels (no torch headers).
//
// Semantics are those of flexcore/core/ops/reference.py and of the CUDA kernels in splat.cu:
// for image b and voxel j, p = A_b[:2] (x_j + sum_k w_jk disp[b, idx_jk]) + D//2; a point is
// kept when -1 <= px < D and -1 <= py < D and its density is added to the [y, x] image with
// bilinear weights (corners outside [0, D) dropped). Design: flexcore/core/ops/design.md.
//
// Work is cut into items: a group of kGroup consecutive images and a range of voxels. Each
// item is handled by one thread, with its own scratch: one cell plane per image of the group
// and the group's projected vertex displacements. Per-image quantities are vectors over the
// kGroup images of the group, so the arithmetic is SIMD; per voxel-image only one 4-float
// record is added (forward) or read (backward) at a data-dependent address. The bindings
// (bindings_cpu.cpp) spread the items over torch's intra-op threads and reduce the
// per-thread buffers.
//
// Cell planes: a point at pixel position p lies in padded cell (iy, ix) = floor(p + 1),
// 0 <= iy, ix <= D for kept points (-1 <= p < D). A cell's record holds its 4 corners'
// values [00, 01, 10, 11] (corner (r, c) = padded pixel (iy + r, ix + c), padded pixel
// (y + 1, x + 1) = image pixel (y, x); the others lie outside the image). Forward: the
// splatted weights, summed into pixels afterwards (a pixel is a corner of 4 cells). Backward:
// the output gradient at the 4 corners (0 outside the image), gathered from the image
// beforehand. Plane of (D + 1)^2 records, row-major, record (iy, ix) at 4 * (iy * (D+1) + ix).
#pragma once

#include <cstdint>

namespace flexcore {
namespace cpu {

// Images per group: one AVX2 vector of floats per per-image quantity.
#define FLEXCORE_CPU_GROUP 8
constexpr int kGroup = FLEXCORE_CPU_GROUP;

struct Problem {
  const float* coords = nullptr;     // (M, 3) x, y, z voxels from the box centre
  const int32_t* vidx = nullptr;     // (M, 4) vertex indices, each in [0, n_vertices)
  const float* bary = nullptr;       // (M, 4) barycentric weights
  const float* density = nullptr;    // (M)
  int64_t m = 0;
  const float* rot = nullptr;        // (batch, 3, 3) RELION matrices A, row-major
  const float* disp = nullptr;       // (rows, n_vertices, 3) or null (rigid)
  const int64_t* disp_row = nullptr; // (batch): image b moves by disp[disp_row[b]]; null: b
  int64_t batch = 0;
  int64_t n_vertices = 0;
  int image_size = 0;                // D
};

struct Item {
  int64_t group = 0;  // images [group * kGroup, group * kGroup + kGroup) (past batch: padding)
  int64_t v0 = 0;     // voxels [v0, v1)
  int64_t v1 = 0;
};

// Floats of scratch an item needs: a cell plane per image, the projected displacements.
inline int64_t cell_floats(int image_size) {
  return 4 * static_cast<int64_t>(image_size + 1) * (image_size + 1);
}
inline int64_t proj_floats(int64_t n_vertices) { return n_vertices * 2 * kGroup; }

// Forward: adds the item's voxels' corner weights into cells (kGroup * cell_floats(D)
// floats, zeroed by the caller; plane g is image group * kGroup + g).
// proj: proj_floats(n_vertices) scratch.
void forward_item(const Problem& p, const Item& it, float* cells, float* proj);

// Backward: grad_cells holds the group's output gradients as cell records. Adds d loss / d density of the item's voxels into grad_density (M floats,
// summed over the group's images) when it is not null, and d loss / d P into grad_proj
// (n_vertices * 2 * kGroup floats: [v][c][g], P = A_b[:2] disp[b, v]) when it is not null
// (needs p.disp). proj: proj_floats(n_vertices) scratch.
void backward_item(const Problem& p, const Item& it, const float* grad_cells,
                   float* grad_density, float* grad_proj, float* proj);

// Which compiled variant runs: "avx2" (x86-64 with AVX2 and FMA, checked at run time) or
// "baseline".
const char* isa();

}  // namespace cpu
}  // namespace flexcore
