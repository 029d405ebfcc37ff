// CPU kernel of the trilinear central-slice insertion (direct Fourier gridding) that the
// rigid Wiener map uses. Same conventions and result as the PyTorch reference
// flexcore/core/gridding.py (CentralSliceInserter._insert): each slice point f of an
// fftshifted rfft slice lands at M f; points at x < 0 go to -M f conjugated; the slice's
// redundant half line (x = 0, y < 0) is skipped; each point is spread on its 8 trilinear
// neighbours; points outside the grid are dropped; contributions to the x = 0 plane are also
// made, conjugated, to their Friedel mates (except at the origin).
//
// Threads split the grid into slabs of z (at::parallel_for): every thread walks all slice
// points and writes only the corners (and Friedel mates) whose z lies in its slab, so no two
// threads write one voxel and no per-thread grid is reduced.
#include "gridding_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace flexcore {
namespace cpu {

namespace {

void check(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.device().is_cpu(), "flexcore gridding (cpu): ", name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == dtype, "flexcore gridding (cpu): ", name, " must be ", dtype,
              ", got ", t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), "flexcore gridding (cpu): ", name, " must be contiguous");
}

}  // namespace

void insert_slices(at::Tensor sums, const at::Tensor& values, const at::Tensor& weights,
                   const at::Tensor& matrices) {
  check(sums, "sums", at::kFloat);
  check(values, "values", at::kFloat);
  check(weights, "weights", at::kFloat);
  check(matrices, "matrices", at::kFloat);
  TORCH_CHECK(sums.dim() == 4 && sums.size(0) == 3, "flexcore gridding (cpu): sums must be "
              "(3, P, P, P/2+1), got ", sums.sizes());
  const int64_t p = sums.size(1);
  const int64_t nx = p / 2 + 1;
  TORCH_CHECK(p % 2 == 0 && sums.size(2) == p && sums.size(3) == nx,
              "flexcore gridding (cpu): sums must be (3, P, P, P/2+1) with P even, got ",
              sums.sizes());
  const int64_t b = matrices.size(0);
  TORCH_CHECK(matrices.dim() == 3 && matrices.size(1) == 3 && matrices.size(2) == 3,
              "flexcore gridding (cpu): matrices must be (B, 3, 3), got ", matrices.sizes());
  TORCH_CHECK(values.dim() == 4 && values.size(0) == b && values.size(1) == p &&
                  values.size(2) == nx && values.size(3) == 2,
              "flexcore gridding (cpu): values must be (B, P, P/2+1, 2), got ", values.sizes());
  TORCH_CHECK(weights.dim() == 3 && weights.size(0) == b && weights.size(1) == p &&
                  weights.size(2) == nx,
              "flexcore gridding (cpu): weights must be (B, P, P/2+1), got ", weights.sizes());
  if (b == 0) return;

  const int64_t plane = p * p * nx;  // one sum
  const int64_t sz = p * nx, sy = nx;
  float* out = sums.data_ptr<float>();
  const float* val = values.data_ptr<float>();
  const float* wts = weights.data_ptr<float>();
  const float* mat = matrices.data_ptr<float>();
  const float half = static_cast<float>(p / 2);
  const float fp = static_cast<float>(p);
  const float inv_p = 1.0f / fp;

  // Slabs of z: about two per thread so an uneven slab does not hold the others up.
  const int64_t n_threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t n_slabs = std::min<int64_t>(p, 2 * n_threads);
  at::parallel_for(0, n_slabs, 1, [&](int64_t s_begin, int64_t s_end) {
    for (int64_t s = s_begin; s < s_end; ++s) {
      const int64_t zlo = s * p / n_slabs, zhi = (s + 1) * p / n_slabs;  // [zlo, zhi)
      for (int64_t i = 0; i < b; ++i) {
        const float* m = mat + i * 9;  // row-major 3x3, xyz
        const float* v = val + i * p * nx * 2;
        const float* w = wts + i * p * nx;
        for (int64_t j = 0; j < p; ++j) {
          const float fy = static_cast<float>(j - p / 2) * inv_p;
          // position of (fx, fy) is m[:, 0] fx + m[:, 1] fy
          const float cx = m[1] * fy, cy = m[4] * fy, cz = m[7] * fy;
          for (int64_t l = (j < p / 2 ? 1 : 0); l < nx; ++l) {
            const float fx = static_cast<float>(l) * inv_p;
            float px = m[0] * fx + cx, py = m[3] * fx + cy, pz = m[6] * fx + cz;
            float sign = 1.0f;
            if (px < 0.0f) {
              px = -px;
              py = -py;
              pz = -pz;
              sign = -1.0f;
            }
            const float x = px * fp, y = py * fp + half, z = pz * fp + half;
            if (!(x <= half && y >= 0.0f && y <= fp - 1.0f && z >= 0.0f && z <= fp - 1.0f))
              continue;
            const float z0f = std::floor(z);
            const int64_t z0 = static_cast<int64_t>(z0f);
            if (z0 + 1 < zlo || z0 >= zhi) {
              // corners outside the slab; a Friedel mate may still be inside it
              const float x0f = std::floor(x);
              if (x0f != 0.0f) continue;
            }
            const float x0f = std::floor(x), y0f = std::floor(y);
            const int64_t x0 = static_cast<int64_t>(x0f), y0 = static_cast<int64_t>(y0f);
            const float tx = x - x0f, ty = y - y0f, tz = z - z0f;
            const int64_t k = j * nx + l;
            const float vr = v[2 * k], vi = sign * v[2 * k + 1], wt = w[k];
            const float wz[2] = {1.0f - tz, tz}, wy[2] = {1.0f - ty, ty}, wx[2] = {1.0f - tx, tx};
            for (int dz = 0; dz < 2; ++dz) {
              const int64_t zc = z0 + dz;
              for (int dy = 0; dy < 2; ++dy) {
                const int64_t yc = y0 + dy;
                const float wzy = wz[dz] * wy[dy];
                if (zc >= zlo && zc < zhi && yc < p) {
                  for (int dx = 0; dx < 2; ++dx) {
                    const int64_t xc = x0 + dx;
                    if (xc >= nx) continue;
                    const float c = wzy * wx[dx];
                    const int64_t idx = zc * sz + yc * sy + xc;
                    out[idx] += c * vr;
                    out[plane + idx] += c * vi;
                    out[2 * plane + idx] += c * wt;
                  }
                }
                if (x0 == 0 && zc < p && yc < p && !(zc == p / 2 && yc == p / 2)) {
                  const int64_t mz = (p - zc) % p, my = (p - yc) % p;
                  if (mz >= zlo && mz < zhi) {
                    const float c = wzy * wx[0];
                    const int64_t idx = mz * sz + my * sy;
                    out[idx] += c * vr;
                    out[plane + idx] -= c * vi;
                    out[2 * plane + idx] += c * wt;
                  }
                }
              }
            }
          }
        }
      }
    }
  });
}

}  // namespace cpu
}  // namespace flexcore
