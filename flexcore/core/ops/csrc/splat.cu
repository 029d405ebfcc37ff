// Push + splat projection: forward and backward CUDA kernels.
//
// Semantics are those of flexcore/core/ops/reference.py (splat_project_reference): for image b and
// voxel j, p = A_b[:2] (x_j + sum_k w_jk disp[b, idx_jk]) + D//2, and density_j is added to the
// [y, x] image with bilinear weights; a corner outside [0, D) is dropped. The kernels use
// A_b[:2] (x + sum_k w_k disp_k) = A_b[:2] x + sum_k w_k (A_b[:2] disp_k), projecting each
// piece's 4 vertex displacements once. Layout and design: flexcore/core/ops/design.md.
#include "splat.h"

#include <algorithm>
#include <cstddef>

namespace flexcore {
namespace {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kDefaultSmemLimit = 48 * 1024;
// Fixed-point forward: a block's integers are density * kFixedOne / (its chunk's sum of
// |density|), so a pixel's sum is at most kFixedOne plus 2 per slot of the chunk (at most
// 2^28 slots, see splat_plan): below 2^31.
constexpr float kFixedOne = 1073741824.f;       // 2^30
constexpr float kFixedUnit = 9.31322574615e-10f;  // 2^-30

#define SPLAT_TRY(expr)                       \
  do {                                        \
    const cudaError_t splat_err_ = (expr);    \
    if (splat_err_ != cudaSuccess) return splat_err_; \
  } while (0)

struct KernelArgs {
  SplatGeometry geo;
  SplatImages img;
  int tiles_per_block;
  int accumulate;
  float* out;              // forward: (batch, D, D)
  const float* chunk_mass; // forward, fixed point: (n_chunks) sum of |density| per chunk
  const float* grad_out;   // backward: (batch, D, D)
  float* grad_slot;        // backward: (n_slots)
  float* grad_proj;        // backward: (batch, n_vertices, 2)
};

struct Rows {  // rows 0 and 1 of one image's rotation A
  float r[6];
};

struct PieceVec {  // 2-vectors for the 4 vertices of a piece: [2k] x, [2k + 1] y
  float d[8];
};

// Rows 0-1 of the rotations of images b0 .. b0+G-1 (images past the batch reuse image b0;
// they are never splatted).
template <int G>
__device__ __forceinline__ void load_rotations(const float* __restrict__ rot, int b0, int nimg,
                                               Rows (&a)[G]) {
#pragma unroll
  for (int g = 0; g < G; ++g) {
    const float* src = rot + static_cast<size_t>(b0 + (g < nimg ? g : 0)) * 9;
#pragma unroll
    for (int c = 0; c < 6; ++c) a[g].r[c] = __ldg(src + c);
  }
}

// A[:2] @ disp[b, v_k] for the 4 vertices of a piece and each image of the block.
template <int G>
__device__ __forceinline__ void load_piece_projections(const float* __restrict__ disp,
                                                       int n_vertices, int b0, int nimg, int4 v,
                                                       const Rows (&a)[G], PieceVec (&p)[G]) {
  const int vk[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int g = 0; g < G; ++g) {
    const float* base =
        disp + static_cast<size_t>(b0 + (g < nimg ? g : 0)) * static_cast<size_t>(n_vertices) * 3;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float* q = base + static_cast<size_t>(vk[k]) * 3;
      const float dx = __ldg(q), dy = __ldg(q + 1), dz = __ldg(q + 2);
      p[g].d[2 * k] = fmaf(a[g].r[0], dx, fmaf(a[g].r[1], dy, a[g].r[2] * dz));
      p[g].d[2 * k + 1] = fmaf(a[g].r[3], dx, fmaf(a[g].r[4], dy, a[g].r[5] * dz));
    }
  }
}

// Image-plane position (pixels) of a voxel; true when its bilinear footprint can touch the
// image, i.e. -1 <= px < D and -1 <= py < D (false for NaN: padding slots).
template <bool HAS_DISP>
__device__ __forceinline__ bool project_point(const Rows& a, const PieceVec& p, float4 cd,
                                              float4 bw, float half, float dsize, float& px,
                                              float& py) {
  px = fmaf(a.r[0], cd.x, fmaf(a.r[1], cd.y, fmaf(a.r[2], cd.z, half)));
  py = fmaf(a.r[3], cd.x, fmaf(a.r[4], cd.y, fmaf(a.r[5], cd.z, half)));
  if (HAS_DISP) {
    px = fmaf(bw.x, p.d[0], fmaf(bw.y, p.d[2], fmaf(bw.z, p.d[4], fmaf(bw.w, p.d[6], px))));
    py = fmaf(bw.x, p.d[1], fmaf(bw.y, p.d[3], fmaf(bw.z, p.d[5], fmaf(bw.w, p.d[7], py))));
  }
  return px >= -1.f && px < dsize && py >= -1.f && py < dsize;
}

__device__ __forceinline__ int warp_max(int x) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  return __reduce_max_sync(kFullMask, x);
#else
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) x = max(x, __shfl_xor_sync(kFullMask, x, off));
  return x;
#endif
}

// Add each piece's accumulated (d loss / d p) per vertex into grad_proj. Lanes whose pieces
// share a tetrahedron (consecutive lanes with equal vertex indices) are summed first by a
// segmented suffix reduction, so one lane per segment issues the global atomics. Every lane of
// the warp must call this (padding pieces hold zeros).
template <int G>
__device__ __forceinline__ void flush_piece_gradients(PieceVec (&acc)[G], int4 v, int lane,
                                                      int b0, int nimg, int n_vertices,
                                                      float* __restrict__ grad_proj) {
  const int ux = __shfl_up_sync(kFullMask, v.x, 1);
  const int uy = __shfl_up_sync(kFullMask, v.y, 1);
  const int uz = __shfl_up_sync(kFullMask, v.z, 1);
  const int uw = __shfl_up_sync(kFullMask, v.w, 1);
  const bool head = lane == 0 || ux != v.x || uy != v.y || uz != v.z || uw != v.w;
  const unsigned heads = __ballot_sync(kFullMask, head);
  const unsigned later = heads & ~((2u << lane) - 1u);  // segment heads after this lane
  const int end = later ? __ffs(static_cast<int>(later)) - 2 : kWarp - 1;  // last lane of segment
  const int longest = warp_max(head ? end - lane + 1 : 0);
  // After the step with offset o, lane l holds the sum over lanes l .. min(l + 2o - 1, end).
  for (int off = 1; off < longest; off <<= 1) {
    const bool take = lane + off <= end;
#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
      for (int c = 0; c < 8; ++c) {
        const float o = __shfl_down_sync(kFullMask, acc[g].d[c], off);
        if (take) acc[g].d[c] += o;
      }
    }
  }
  if (!head) return;
  const int vk[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int g = 0; g < G; ++g) {
    if (g < nimg) {
      float* dst = grad_proj + static_cast<size_t>(b0 + g) * static_cast<size_t>(n_vertices) * 2;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        float* q = dst + static_cast<size_t>(vk[k]) * 2;
        if (acc[g].d[2 * k] != 0.f) atomicAdd(q, acc[g].d[2 * k]);
        if (acc[g].d[2 * k + 1] != 0.f) atomicAdd(q + 1, acc[g].d[2 * k + 1]);
      }
    }
  }
}

// Forward. Grid: (image groups, voxel chunks); block: `threads` threads, warp w handles tiles
// t_begin + w, t_begin + w + nwarps, ...; lane l handles piece t*32 + l, one voxel per step,
// and splats it into each of the block's G images. SMEM: G padded (D+2)^2 images in shared
// memory (border row/column catch the out-of-box corners), flushed once per block.
// FIXED (with SMEM): the planes hold int32 in units of the block's chunk mass / 2^30, added
// with native ATOMS.ADD (a float shared atomicAdd is a compare-and-swap loop on sm_90). A
// voxel's density is rounded once; three corner shares are rounded and the fourth is the
// remainder, so each voxel adds exactly its rounded density.
template <int G, bool SMEM, bool FIXED, bool HAS_DISP>
__global__ void __launch_bounds__(kSplatMaxThreads, 1) splat_forward_kernel(const KernelArgs args) {
  static_assert(SMEM || !FIXED, "fixed point needs the shared-memory planes");
  extern __shared__ float smem[];
  int* const ismem = reinterpret_cast<int*>(smem);
  const SplatGeometry& geo = args.geo;
  const int D = args.img.image_size;
  const int S = D + 2;
  const int plane = S * S;
  const int b0 = static_cast<int>(blockIdx.x) * G;
  const int nimg = min(G, args.img.batch - b0);
  const float half = static_cast<float>(D / 2);
  const float dsize = static_cast<float>(D);

  Rows a[G];
  load_rotations<G>(args.img.rotations, b0, nimg, a);
  float scale = 1.f, unit = 1.f;  // FIXED: integers per unit density, and back
  if (FIXED) {
    const float mass = __ldg(args.chunk_mass + blockIdx.y);
    scale = mass > 0.f ? kFixedOne / mass : 0.f;
    unit = mass * kFixedUnit;  // NaN / inf mass: every pixel of the chunk becomes NaN
  }

  if (SMEM) {
    for (int i = threadIdx.x; i < G * plane; i += blockDim.x) smem[i] = 0.f;
    __syncthreads();
  }

  const int lane = threadIdx.x & (kWarp - 1);
  const int warp = threadIdx.x / kWarp;
  const int nwarps = blockDim.x / kWarp;
  const int R = geo.piece_len;
  const int t_begin = static_cast<int>(blockIdx.y) * args.tiles_per_block;
  const int t_end = min(geo.n_tiles, t_begin + args.tiles_per_block);

  for (int t = t_begin + warp; t < t_end; t += nwarps) {
    PieceVec p[G] = {};
    if (HAS_DISP) {
      const int4 v = __ldg(geo.piece_vidx + static_cast<size_t>(t) * kWarp + lane);
      load_piece_projections<G>(args.img.displacements, args.img.n_vertices, b0, nimg, v, a, p);
    }
    const size_t slot0 = static_cast<size_t>(t) * kWarp * R + lane;
    for (int i = 0; i < R; ++i) {
      const size_t slot = slot0 + static_cast<size_t>(i) * kWarp;
      const float4 cd = __ldg(geo.slot_cd + slot);
      if (cd.w == 0.f) continue;  // zero density (padding slots too) adds nothing
      const float4 bw = HAS_DISP ? __ldg(geo.slot_bary + slot) : make_float4(0.f, 0.f, 0.f, 0.f);
      const float dens = FIXED ? cd.w * scale : cd.w;
      const int itotal = FIXED ? __float2int_rn(dens) : 0;
#pragma unroll
      for (int g = 0; g < G; ++g) {
        if (g >= nimg) continue;
        float px, py;
        if (!project_point<HAS_DISP>(a[g], p[g], cd, bw, half, dsize, px, py)) continue;
        const float fx = floorf(px), fy = floorf(py);
        const float tx = px - fx, ty = py - fy;
        const int ix = static_cast<int>(fx), iy = static_cast<int>(fy);  // in [-1, D-1]
        const float r1 = dens * ty, r0 = dens - r1;
        const float w01 = r0 * tx, w00 = r0 - w01;
        const float w11 = r1 * tx, w10 = r1 - w11;
        if (FIXED) {
          int* q = ismem + g * plane + (iy + 1) * S + (ix + 1);
          const int i00 = __float2int_rn(w00), i01 = __float2int_rn(w01);
          const int i10 = __float2int_rn(w10);
          atomicAdd(q, i00);
          atomicAdd(q + 1, i01);
          atomicAdd(q + S, i10);
          atomicAdd(q + S + 1, itotal - i00 - i01 - i10);
        } else if (SMEM) {
          float* q = smem + g * plane + (iy + 1) * S + (ix + 1);
          atomicAdd(q, w00);
          atomicAdd(q + 1, w01);
          atomicAdd(q + S, w10);
          atomicAdd(q + S + 1, w11);
        } else {
          float* img = args.out + static_cast<size_t>(b0 + g) * D * D;
          const bool x0 = ix >= 0, x1 = ix + 1 < D;
          if (iy >= 0) {
            float* row = img + static_cast<size_t>(iy) * D;
            if (x0) atomicAdd(row + ix, w00);
            if (x1) atomicAdd(row + ix + 1, w01);
          }
          if (iy + 1 < D) {
            float* row = img + static_cast<size_t>(iy + 1) * D;
            if (x0) atomicAdd(row + ix, w10);
            if (x1) atomicAdd(row + ix + 1, w11);
          }
        }
      }
    }
  }

  if (SMEM) {
    __syncthreads();
    const int npix = D * D;
    for (int g = 0; g < nimg; ++g) {
      float* dst = args.out + static_cast<size_t>(b0 + g) * npix;
      const float* src = smem + g * plane;
      const int* isrc = ismem + g * plane;
      for (int idx = threadIdx.x; idx < npix; idx += blockDim.x) {
        const int y = idx / D;
        const int x = idx - y * D;
        const int at = (y + 1) * S + x + 1;
        const float val = FIXED ? static_cast<float>(isrc[at]) * unit : src[at];
        if (args.accumulate) {
          if (val != 0.f) atomicAdd(dst + idx, val);
        } else {
          dst[idx] = val;
        }
      }
    }
  }
}

// Backward. Same grid and lane mapping as the forward. SMEM: the block's G grad images are
// staged in padded (D+2)^2 planes with a zero border. Per slot, d loss / d density is summed
// over the block's images in a register and written once (atomically when several image
// groups exist). Per lane, d loss / d p (p = A[:2] disp) of the piece's 4 vertices is summed
// over the piece's voxels in registers, then over lanes of the same tetrahedron by
// flush_piece_gradients, then added to grad_proj.
template <int G, bool SMEM, bool HAS_DISP, bool NEED_GD, bool NEED_GP>
__global__ void __launch_bounds__(kSplatMaxThreads, 1)
    splat_backward_kernel(const KernelArgs args) {
  static_assert(HAS_DISP || !NEED_GP, "displacement gradients need displacements");
  extern __shared__ float smem[];
  const SplatGeometry& geo = args.geo;
  const int D = args.img.image_size;
  const int S = D + 2;
  const int plane = S * S;
  const int b0 = static_cast<int>(blockIdx.x) * G;
  const int nimg = min(G, args.img.batch - b0);
  const float half = static_cast<float>(D / 2);
  const float dsize = static_cast<float>(D);

  Rows a[G];
  load_rotations<G>(args.img.rotations, b0, nimg, a);

  if (SMEM) {
    for (int i = threadIdx.x; i < G * plane; i += blockDim.x) {
      const int g = i / plane;
      const int r = i - g * plane;
      const int y = r / S - 1;
      const int x = r - (y + 1) * S - 1;
      float val = 0.f;
      if (g < nimg && y >= 0 && y < D && x >= 0 && x < D) {
        val = __ldg(args.grad_out + (static_cast<size_t>(b0 + g) * D + y) * D + x);
      }
      smem[i] = val;
    }
    __syncthreads();
  }

  const int lane = threadIdx.x & (kWarp - 1);
  const int warp = threadIdx.x / kWarp;
  const int nwarps = blockDim.x / kWarp;
  const int R = geo.piece_len;
  const int t_begin = static_cast<int>(blockIdx.y) * args.tiles_per_block;
  const int t_end = min(geo.n_tiles, t_begin + args.tiles_per_block);

  for (int t = t_begin + warp; t < t_end; t += nwarps) {  // warp-uniform loop
    int4 v = make_int4(0, 0, 0, 0);
    PieceVec p[G] = {};
    PieceVec acc[G] = {};
    if (HAS_DISP) {
      v = __ldg(geo.piece_vidx + static_cast<size_t>(t) * kWarp + lane);
      load_piece_projections<G>(args.img.displacements, args.img.n_vertices, b0, nimg, v, a, p);
    }
    const size_t slot0 = static_cast<size_t>(t) * kWarp * R + lane;
    for (int i = 0; i < R; ++i) {
      const size_t slot = slot0 + static_cast<size_t>(i) * kWarp;
      const float4 cd = __ldg(geo.slot_cd + slot);
      const float4 bw = HAS_DISP ? __ldg(geo.slot_bary + slot) : make_float4(0.f, 0.f, 0.f, 0.f);
      float gd = 0.f;
#pragma unroll
      for (int g = 0; g < G; ++g) {
        if (g >= nimg) continue;
        float px, py;
        if (!project_point<HAS_DISP>(a[g], p[g], cd, bw, half, dsize, px, py)) continue;
        const float fx = floorf(px), fy = floorf(py);
        const float tx = px - fx, ty = py - fy;
        const int ix = static_cast<int>(fx), iy = static_cast<int>(fy);  // in [-1, D-1]
        float g00, g01, g10, g11;
        if (SMEM) {
          const float* q = smem + g * plane + (iy + 1) * S + (ix + 1);
          g00 = q[0];
          g01 = q[1];
          g10 = q[S];
          g11 = q[S + 1];
        } else {
          const float* img = args.grad_out + static_cast<size_t>(b0 + g) * D * D;
          const bool x0 = ix >= 0, x1 = ix + 1 < D;
          g00 = g01 = g10 = g11 = 0.f;
          if (iy >= 0) {
            const float* row = img + static_cast<size_t>(iy) * D;
            if (x0) g00 = __ldg(row + ix);
            if (x1) g01 = __ldg(row + ix + 1);
          }
          if (iy + 1 < D) {
            const float* row = img + static_cast<size_t>(iy + 1) * D;
            if (x0) g10 = __ldg(row + ix);
            if (x1) g11 = __ldg(row + ix + 1);
          }
        }
        const float dtop = g01 - g00, dbot = g11 - g10;
        const float top = fmaf(tx, dtop, g00);  // grad image interpolated along x, row iy
        const float bot = fmaf(tx, dbot, g10);  // row iy + 1
        if (NEED_GD) gd += fmaf(ty, bot - top, top);
        if (NEED_GP) {
          const float gpx = cd.w * fmaf(ty, dbot - dtop, dtop);  // d/dpx of the bilinear gather
          const float gpy = cd.w * (bot - top);                  // d/dpy
          acc[g].d[0] = fmaf(bw.x, gpx, acc[g].d[0]);
          acc[g].d[1] = fmaf(bw.x, gpy, acc[g].d[1]);
          acc[g].d[2] = fmaf(bw.y, gpx, acc[g].d[2]);
          acc[g].d[3] = fmaf(bw.y, gpy, acc[g].d[3]);
          acc[g].d[4] = fmaf(bw.z, gpx, acc[g].d[4]);
          acc[g].d[5] = fmaf(bw.z, gpy, acc[g].d[5]);
          acc[g].d[6] = fmaf(bw.w, gpx, acc[g].d[6]);
          acc[g].d[7] = fmaf(bw.w, gpy, acc[g].d[7]);
        }
      }
      if (NEED_GD) {
        float* dst = args.grad_slot + slot;
        if (args.accumulate) {
          if (gd != 0.f) atomicAdd(dst, gd);
        } else {
          *dst = gd;
        }
      }
    }
    if (NEED_GP) {
      flush_piece_gradients<G>(acc, v, lane, b0, nimg, args.img.n_vertices, args.grad_proj);
    }
  }
}

using KernelFn = void (*)(KernelArgs);

template <int G, bool SMEM, bool FIXED>
KernelFn forward_kernel_for(bool disp) {
  return disp ? splat_forward_kernel<G, SMEM, FIXED, true>
              : splat_forward_kernel<G, SMEM, FIXED, false>;
}

template <int G, bool SMEM>
KernelFn backward_kernel_for(bool disp, bool gd, bool gp) {
  if (!disp) return gd && !gp ? splat_backward_kernel<G, SMEM, false, true, false> : nullptr;
  if (gd && gp) return splat_backward_kernel<G, SMEM, true, true, true>;
  if (gd) return splat_backward_kernel<G, SMEM, true, true, false>;
  if (gp) return splat_backward_kernel<G, SMEM, true, false, true>;
  return nullptr;
}

template <int G>
KernelFn kernel_for_g(const SplatVariant& v, int path) {
  const bool smem = path == kPathShared || path == kPathFixed;
  if (v.backward) {  // no shared atomics in the backward: kPathFixed runs kPathShared's kernel
    return smem ? backward_kernel_for<G, true>(v.has_disp, v.need_grad_density,
                                               v.need_grad_displacements)
                : backward_kernel_for<G, false>(v.has_disp, v.need_grad_density,
                                                v.need_grad_displacements);
  }
  if (path == kPathFixed) return forward_kernel_for<G, true, true>(v.has_disp);
  return smem ? forward_kernel_for<G, true, false>(v.has_disp)
              : forward_kernel_for<G, false, false>(v.has_disp);
}

KernelFn select_kernel(const SplatVariant& v, int images_per_block, int path) {
  switch (images_per_block) {
    case 1: return kernel_for_g<1>(v, path);
    case 2: return kernel_for_g<2>(v, path);
    case 3: return kernel_for_g<3>(v, path);
    case 4: return kernel_for_g<4>(v, path);
    default: return nullptr;
  }
}

long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }

cudaError_t prepare_kernel(KernelFn k, int smem_bytes) {
  if (k == nullptr) return cudaErrorInvalidValue;
  if (smem_bytes > kDefaultSmemLimit) {
    SPLAT_TRY(cudaFuncSetAttribute(reinterpret_cast<const void*>(k),
                                   cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes));
  }
  return cudaSuccess;
}

cudaError_t launch(const SplatVariant& variant, const SplatPlan& plan, const KernelArgs& args,
                   cudaStream_t stream) {
  const int batch = args.img.batch;
  const int G = plan.images_per_block;
  if (batch < 0 || args.geo.n_tiles < 0 || args.geo.piece_len < 1 || args.img.image_size < 1) {
    return cudaErrorInvalidValue;
  }
  if (batch == 0 || args.geo.n_tiles == 0) return cudaSuccess;
  if (G < 1 || G > kSplatMaxImagesPerBlock || plan.n_groups != ceil_div(batch, G) ||
      plan.n_chunks != ceil_div(args.geo.n_tiles, plan.tiles_per_block) ||
      plan.n_chunks > 65535 || plan.threads < kWarp || plan.threads > kSplatMaxThreads ||
      plan.threads % kWarp != 0) {
    return cudaErrorInvalidValue;
  }
  if (args.geo.slot_cd == nullptr || args.img.rotations == nullptr ||
      (variant.has_disp && (args.geo.slot_bary == nullptr || args.geo.piece_vidx == nullptr ||
                            args.img.n_vertices < 1))) {
    return cudaErrorInvalidValue;
  }
  if (plan.path != kPathShared && plan.path != kPathGlobal && plan.path != kPathFixed) {
    return cudaErrorInvalidValue;
  }
  const bool smem = plan.path != kPathGlobal;
  if (smem != (plan.smem_bytes > 0)) return cudaErrorInvalidValue;
  if (!variant.backward && plan.path == kPathFixed && args.chunk_mass == nullptr) {
    return cudaErrorInvalidValue;
  }
  const KernelFn k = select_kernel(variant, G, plan.path);
  SPLAT_TRY(prepare_kernel(k, plan.smem_bytes));
  const dim3 grid(static_cast<unsigned>(plan.n_groups), static_cast<unsigned>(plan.n_chunks));
  k<<<grid, plan.threads, plan.smem_bytes, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace

cudaError_t splat_plan(const SplatVariant& variant, int batch, int image_size, int n_tiles,
                       int piece_len, const SplatTuning& tuning, SplatPlan* plan) {
  if (plan == nullptr || batch < 0 || image_size < 1 || image_size > 16384 || n_tiles < 0 ||
      piece_len < 1) {
    return cudaErrorInvalidValue;
  }
  if (variant.backward && !variant.need_grad_density && !variant.need_grad_displacements) {
    return cudaErrorInvalidValue;
  }
  if (variant.backward && variant.need_grad_displacements && !variant.has_disp) {
    return cudaErrorInvalidValue;
  }
  if (tuning.images_per_block < 0 || tuning.images_per_block > kSplatMaxImagesPerBlock ||
      tuning.threads < 0 || tuning.threads > kSplatMaxThreads || tuning.threads % kWarp != 0 ||
      tuning.tiles_per_block < 0 || tuning.path < kPathAuto || tuning.path > kPathFixed) {
    return cudaErrorInvalidValue;
  }

  int device = 0, n_sm = 0, smem_optin = 0, smem_per_sm = 0;
  SPLAT_TRY(cudaGetDevice(&device));
  SPLAT_TRY(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, device));
  SPLAT_TRY(cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  SPLAT_TRY(cudaDeviceGetAttribute(&smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor,
                                   device));

  const long long plane_bytes =
      static_cast<long long>(image_size + 2) * (image_size + 2) * static_cast<long long>(sizeof(float));
  const int g_fit =
      static_cast<int>(std::min<long long>(kSplatMaxImagesPerBlock, smem_optin / plane_bytes));
  int path = tuning.path;
  if (path == kPathAuto) path = g_fit >= 1 ? kPathShared : kPathGlobal;
  const bool shared = path == kPathShared || path == kPathFixed;  // int32 planes: same bytes
  if (shared && g_fit < 1) return cudaErrorInvalidValue;
  const int g_cap = shared ? g_fit : kSplatMaxImagesPerBlock;
  int G = tuning.images_per_block > 0 ? tuning.images_per_block : g_cap;
  if (G > g_cap) return cudaErrorInvalidValue;
  G = std::max(1, std::min(G, std::max(batch, 1)));
  const int smem_bytes = shared ? static_cast<int>(G * plane_bytes) : 0;

  int threads = tuning.threads;
  if (threads == 0) {
    // One resident block per SM (large images): fill it with 16 warps; else 8 warps per block.
    const bool one_per_sm = smem_bytes > 0 && smem_per_sm / smem_bytes <= 1;
    threads = one_per_sm ? 512 : 256;
  }

  const KernelFn k = select_kernel(variant, G, path);
  SPLAT_TRY(prepare_kernel(k, smem_bytes));
  int blocks_per_sm = 0;
  SPLAT_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks_per_sm, k, threads, smem_bytes));
  if (blocks_per_sm < 1) return cudaErrorInvalidConfiguration;

  const int n_groups = batch > 0 ? static_cast<int>(ceil_div(batch, G)) : 0;
  long long tiles = tuning.tiles_per_block;
  if (tiles == 0 && n_tiles > 0) {
    // About two waves of blocks; each warp gets a tile; on the shared path a chunk holds at
    // least 2 D^2 slots so that filling / flushing the images stays a small part of the work.
    const long long target_blocks = 2LL * blocks_per_sm * n_sm;
    const long long chunks = std::max(1LL, ceil_div(target_blocks, std::max(n_groups, 1)));
    long long t_min = threads / kWarp;
    if (shared) {
      t_min = std::max(t_min, ceil_div(2LL * image_size * image_size, 32LL * piece_len));
    }
    tiles = std::min<long long>(std::max(ceil_div(n_tiles, chunks), t_min), n_tiles);
  }
  tiles = std::max(tiles, 1LL);
  if (path == kPathFixed) {  // at most 2^28 slots per chunk: pixel sums stay below 2^31
    tiles = std::min(tiles, std::max(1LL, (1LL << 28) / (32LL * piece_len)));
  }
  if (n_tiles > 0 && ceil_div(n_tiles, tiles) > 65535) tiles = ceil_div(n_tiles, 65535);
  const int n_chunks = n_tiles > 0 ? static_cast<int>(ceil_div(n_tiles, tiles)) : 0;

  SplatPlan out;
  out.images_per_block = G;
  out.threads = threads;
  out.tiles_per_block = static_cast<int>(std::min<long long>(tiles, 1LL << 30));
  out.path = path;
  out.n_groups = n_groups;
  out.n_chunks = n_chunks;
  out.smem_bytes = smem_bytes;
  out.blocks_per_sm = blocks_per_sm;
  if (variant.backward) {
    out.accumulate = n_groups > 1 ? 1 : 0;
  } else {
    out.accumulate = (path == kPathGlobal || n_chunks != 1) ? 1 : 0;
  }
  *plan = out;
  return cudaSuccess;
}

cudaError_t splat_forward(const SplatGeometry& geo, const SplatImages& img, const SplatPlan& plan,
                          const float* chunk_mass, float* out, cudaStream_t stream) {
  if (out == nullptr) return cudaErrorInvalidValue;
  SplatVariant variant;
  variant.backward = false;
  variant.has_disp = img.displacements != nullptr;
  KernelArgs args{};
  args.geo = geo;
  args.img = img;
  args.tiles_per_block = plan.tiles_per_block;
  args.accumulate = plan.accumulate;
  args.out = out;
  args.chunk_mass = chunk_mass;
  return launch(variant, plan, args, stream);
}

cudaError_t splat_backward(const SplatGeometry& geo, const SplatImages& img,
                           const SplatPlan& plan, const float* grad_out,
                           const SplatBackwardOutputs& outs, cudaStream_t stream) {
  if (grad_out == nullptr) return cudaErrorInvalidValue;
  SplatVariant variant;
  variant.backward = true;
  variant.has_disp = img.displacements != nullptr;
  variant.need_grad_density = outs.grad_slot != nullptr;
  variant.need_grad_displacements = outs.grad_proj != nullptr;
  if (!variant.need_grad_density && !variant.need_grad_displacements) return cudaSuccess;
  if (variant.need_grad_displacements && !variant.has_disp) return cudaErrorInvalidValue;
  KernelArgs args{};
  args.geo = geo;
  args.img = img;
  args.tiles_per_block = plan.tiles_per_block;
  args.accumulate = plan.accumulate;
  args.grad_out = grad_out;
  args.grad_slot = outs.grad_slot;
  args.grad_proj = outs.grad_proj;
  return launch(variant, plan, args, stream);
}

}  // namespace flexcore
