// CPU kernel of the as-rigid-as-possible penalty (flexcore/core/model/priors.py): per image
// b, pen[b] = sum_c w_c max(0, tr(F^T F) - 2 sum_k sigma_k(F) + 3) with F = E Einv the cell's
// deformation gradient, and, in the same pass, d pen[b] / d disp[b]. The singular-value sum
// is the Newton solve of priors._nuclear_norm (same start, the same steps up to 12, stopping
// once a step no longer moves s, and the same last step whose derivative is taken with s
// held fixed), so value and gradient are those of the PyTorch
// form; each cell's 3 x 3 algebra stays in registers, in double precision, instead of ~100
// passes over (3, B, cells) arrays. Images are split over torch's intra-op threads: each
// thread owns its images' gradient rows, so no two threads write one value.

#include <ATen/Parallel.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "rigidity_cpu.h"

namespace flexcore {
namespace cpu {

namespace {

struct Slope {
  double g, slope;
  bool clamped;
};

inline Slope g_and_slope(double s, double t, double e, double d) {
  const double q = s * s - t;
  const double raw = s * q - 2.0 * d;
  return {0.25 * q * q - e - 2.0 * d * s, std::max(raw, 1e-6), !(raw > 1e-6)};
}

inline double sign(double x) { return (x > 0.0) - (x < 0.0); }

}  // namespace

std::vector<at::Tensor> rigidity_penalty(const at::Tensor& points, const at::Tensor& cells,
                                         const at::Tensor& edges_inv, const at::Tensor& weights,
                                         const at::Tensor& displacements, bool need_grad,
                                         int64_t iterations) {
  for (const auto* t : {&points, &edges_inv, &weights, &displacements}) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kFloat && t->is_contiguous(),
                "flexcore rigidity (cpu): inputs must be contiguous float32 CPU tensors");
  }
  TORCH_CHECK(cells.device().is_cpu() && cells.scalar_type() == at::kLong && cells.is_contiguous(),
              "flexcore rigidity (cpu): cells must be contiguous int64");
  const int64_t nv = points.size(0), nc = cells.size(0), batch = displacements.size(0);
  TORCH_CHECK(points.dim() == 2 && points.size(1) == 3, "points must be (Nv, 3)");
  TORCH_CHECK(cells.dim() == 2 && cells.size(1) == 4, "cells must be (Nc, 4)");
  TORCH_CHECK(edges_inv.dim() == 3 && edges_inv.size(0) == nc && edges_inv.size(1) == 3 &&
              edges_inv.size(2) == 3, "edges_inv must be (Nc, 3, 3)");
  TORCH_CHECK(weights.dim() == 1 && weights.size(0) == nc, "weights must be (Nc,)");
  TORCH_CHECK(displacements.dim() == 3 && displacements.size(1) == nv &&
              displacements.size(2) == 3, "displacements must be (B, Nv, 3)");
  const int64_t* cell = cells.data_ptr<int64_t>();
  if (nc > 0) {
    const auto [lo, hi] = std::minmax_element(cell, cell + 4 * nc);
    TORCH_CHECK(*lo >= 0 && *hi < nv, "flexcore rigidity (cpu): cell vertex indices must lie in "
                "[0, ", nv, "), got [", *lo, ", ", *hi, "]");
  }
  at::Tensor pen = at::zeros({batch}, displacements.options());
  at::Tensor grad = at::zeros({need_grad ? batch : 0, nv, 3}, displacements.options());
  const float* p = points.data_ptr<float>();
  const float* einv = edges_inv.data_ptr<float>();
  const float* w = weights.data_ptr<float>();
  const float* disp = displacements.data_ptr<float>();
  float* pen_ptr = pen.data_ptr<float>();
  float* grad_ptr = need_grad ? grad.data_ptr<float>() : nullptr;

  at::parallel_for(0, batch, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const float* d = disp + b * nv * 3;
      float* gd = need_grad ? grad_ptr + b * nv * 3 : nullptr;
      double total = 0.0;
      for (int64_t c = 0; c < nc; ++c) {
        const int64_t* v = cell + 4 * c;
        double q[4][3];
        for (int k = 0; k < 4; ++k) {
          for (int i = 0; i < 3; ++i) q[k][i] = double(p[3 * v[k] + i]) + double(d[3 * v[k] + i]);
        }
        double E[3][3];  // E[i][k]: component i of edge k (q_{k+1} - q_0)
        for (int i = 0; i < 3; ++i) {
          for (int k = 0; k < 3; ++k) E[i][k] = q[k + 1][i] - q[0][i];
        }
        const float* ei = einv + 9 * c;  // Einv[k][j] = ei[3 k + j]
        double F[3][3];
        for (int i = 0; i < 3; ++i) {
          for (int j = 0; j < 3; ++j) {
            F[i][j] = E[i][0] * ei[j] + E[i][1] * ei[3 + j] + E[i][2] * ei[6 + j];
          }
        }
        double C[3][3];  // F^T F
        for (int a = 0; a < 3; ++a) {
          for (int bb = 0; bb < 3; ++bb) {
            C[a][bb] = F[0][a] * F[0][bb] + F[1][a] * F[1][bb] + F[2][a] * F[2][bb];
          }
        }
        const double t = C[0][0] + C[1][1] + C[2][2];
        double tr_c2 = 0.0;
        for (int a = 0; a < 3; ++a) {
          for (int bb = 0; bb < 3; ++bb) tr_c2 += C[a][bb] * C[a][bb];
        }
        const double e = 0.5 * (t * t - tr_c2);
        // columns f_j = F[:, j]; det = f0 . (f1 x f2)
        double cof[3][3];  // cof[:, j] = d det / d f_j
        for (int j = 0; j < 3; ++j) {
          const int j1 = (j + 1) % 3, j2 = (j + 2) % 3;
          cof[0][j] = F[1][j1] * F[2][j2] - F[2][j1] * F[1][j2];
          cof[1][j] = F[2][j1] * F[0][j2] - F[0][j1] * F[2][j2];
          cof[2][j] = F[0][j1] * F[1][j2] - F[1][j1] * F[0][j2];
        }
        const double det = F[0][0] * cof[0][0] + F[1][0] * cof[1][0] + F[2][0] * cof[2][0];
        const double dabs = std::fabs(det);
        const double tp = std::max(t, 0.0);
        const double floor_s = std::sqrt(tp);
        double s = std::sqrt(3.0 * tp);
        for (int64_t it = 0; it < iterations; ++it) {
          const Slope gs = g_and_slope(s, t, e, dabs);
          const double next = std::max(s - gs.g / gs.slope, floor_s);
          // converged (Newton from above is monotone): later steps would not move s
          const bool done = std::fabs(next - s) <= 1e-15 * s;
          s = next;
          if (done) break;
        }
        const Slope gs = g_and_slope(s, t, e, dabs);
        const double sf = s - gs.g / gs.slope;
        const double per_cell = t - 2.0 * sf + 3.0;
        const double wc = w[c];
        total += std::max(per_cell, 0.0) * wc;
        if (!need_grad || !(per_cell >= 0.0)) continue;
        // s_f = s - g / slope with s fixed: derivatives in t, e and |det|
        const double qq = s * s - t, sl = gs.slope, sl2 = sl * sl;
        const double dslope_dt = gs.clamped ? 0.0 : -s, dslope_dd = gs.clamped ? 0.0 : -2.0;
        const double dsf_dt = -((-0.5 * qq) * sl - gs.g * dslope_dt) / sl2;
        const double dsf_de = 1.0 / sl;
        const double dsf_dd = -((-2.0 * s) * sl - gs.g * dslope_dd) / sl2;
        const double A = wc * (1.0 - 2.0 * dsf_dt);  // d pen / d t (direct)
        const double B = wc * (-2.0 * dsf_de);       // d pen / d e
        const double D = wc * (-2.0 * dsf_dd) * sign(det);  // d pen / d det
        // d t/dF = 2F, d e/dF = 2 t F - 2 F C, d det/dF = cof
        double G[3][3];
        for (int i = 0; i < 3; ++i) {
          for (int j = 0; j < 3; ++j) {
            const double fc = F[i][0] * C[0][j] + F[i][1] * C[1][j] + F[i][2] * C[2][j];
            G[i][j] = 2.0 * A * F[i][j] + B * (2.0 * t * F[i][j] - 2.0 * fc) + D * cof[i][j];
          }
        }
        // G_E = G Einv^T: column k is the gradient of vertex k + 1; vertex 0 gets minus their sum
        for (int i = 0; i < 3; ++i) {
          double sum = 0.0;
          for (int k = 0; k < 3; ++k) {
            const double gk = G[i][0] * ei[3 * k] + G[i][1] * ei[3 * k + 1] + G[i][2] * ei[3 * k + 2];
            gd[3 * v[k + 1] + i] += static_cast<float>(gk);
            sum += gk;
          }
          gd[3 * v[0] + i] -= static_cast<float>(sum);
        }
      }
      pen_ptr[b] = static_cast<float>(total);
    }
  });
  return {pen, grad};
}

}  // namespace cpu
}  // namespace flexcore
