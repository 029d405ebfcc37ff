// Push + splat projection kernels: plain-pointer launchers (no torch headers).
//
// Data layout (built by flexcore/core/ops/cuda.py, described in flexcore/core/ops/design.md):
//   * voxels are grouped into "pieces": at most `piece_len` consecutive voxels that share one
//     tetrahedron (same 4 vertex indices); pieces are grouped 32 to a "tile" (one per lane);
//   * slot arrays are tile-major and transposed: voxel i of the piece in lane l of tile t sits
//     at slot t*32*piece_len + i*32 + l, so a warp reads 32 consecutive slots per step;
//   * padding slots carry NaN coordinates and zero density (the in-box test rejects them);
//     padding pieces carry vertex index 0.
#pragma once

#include <cuda_runtime.h>

namespace flexcore {

constexpr int kSplatMaxThreads = 512;
constexpr int kSplatMaxImagesPerBlock = 4;

// kPathShared: images in shared memory (float atomics); kPathGlobal: global atomics;
// kPathFixed: as kPathShared, but the forward accumulates in 32-bit fixed point with native
// integer shared atomics (the backward, which has no shared atomics, is kPathShared's).
enum SplatPath : int { kPathAuto = 0, kPathShared = 1, kPathGlobal = 2, kPathFixed = 3 };

struct SplatGeometry {
  const float4* slot_cd = nullptr;    // (n_slots) x, y, z (voxels from box centre), density
  const float4* slot_bary = nullptr;  // (n_slots) barycentric weights of the 4 vertices
  const int4* piece_vidx = nullptr;   // (n_tiles*32) vertex indices of each piece's tetrahedron
  int n_tiles = 0;                    // n_slots = n_tiles * 32 * piece_len
  int piece_len = 1;
};

struct SplatImages {
  const float* displacements = nullptr;  // (batch, n_vertices, 3) or nullptr (rigid)
  int n_vertices = 0;
  const float* rotations = nullptr;      // (batch, 3, 3) row-major; p = A q
  int batch = 0;
  int image_size = 0;                    // D
};

// Which kernel: the forward, or the backward computing the requested gradients.
struct SplatVariant {
  bool backward = false;
  bool has_disp = false;
  bool need_grad_density = false;        // backward only
  bool need_grad_displacements = false;  // backward only; needs has_disp
};

// 0 means "choose from the sizes and the device".
struct SplatTuning {
  int images_per_block = 0;  // G, 1..4
  int threads = 0;           // multiple of 32, at most 512
  int tiles_per_block = 0;   // tiles of 32 pieces handled by one block (its voxel chunk)
  int path = kPathAuto;      // a SplatPath
};

struct SplatPlan {
  int images_per_block = 0;
  int threads = 0;
  int tiles_per_block = 0;
  int path = kPathAuto;
  int n_groups = 0;       // gridDim.x: groups of images_per_block images
  int n_chunks = 0;       // gridDim.y: voxel chunks of tiles_per_block tiles
  int smem_bytes = 0;     // dynamic shared memory per block
  int blocks_per_sm = 0;  // occupancy of the chosen kernel
  int accumulate = 0;     // forward: the output must be zero-filled (blocks add atomically);
                          // backward: grad_slot must be zero-filled (several image groups)
};

struct SplatBackwardOutputs {
  float* grad_slot = nullptr;  // (n_slots) d loss / d density of each slot, or nullptr
  float* grad_proj = nullptr;  // (batch, n_vertices, 2) d loss / d (A[:2] @ displacement)
};

// Resolve `tuning` into a launch plan. Returns cudaErrorInvalidValue for inconsistent sizes or
// tuning values (e.g. a shared-memory path that does not fit).
cudaError_t splat_plan(const SplatVariant& variant, int batch, int image_size, int n_tiles,
                       int piece_len, const SplatTuning& tuning, SplatPlan* plan);

// out: (batch, D, D); must be zero-filled when plan.accumulate != 0. chunk_mass: for
// plan.path == kPathFixed, (plan.n_chunks) sums of |density| over each chunk's slots (chunk c
// holds slots [c, c + 1) * tiles_per_block * 32 * piece_len); it sets each block's fixed-point
// scale so that no pixel sum can overflow. Ignored (may be null) on the other paths.
cudaError_t splat_forward(const SplatGeometry& geo, const SplatImages& img, const SplatPlan& plan,
                          const float* chunk_mass, float* out, cudaStream_t stream);

// grad_out: (batch, D, D). outs.grad_slot must be zero-filled when plan.accumulate != 0;
// outs.grad_proj must always be zero-filled. A null output is not computed.
cudaError_t splat_backward(const SplatGeometry& geo, const SplatImages& img,
                           const SplatPlan& plan, const float* grad_out,
                           const SplatBackwardOutputs& outs, cudaStream_t stream);

}  // namespace flexcore
