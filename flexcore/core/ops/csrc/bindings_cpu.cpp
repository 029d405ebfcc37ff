// Torch bindings of the CPU push + splat kernels: argument checks, work items spread over
// torch's intra-op threads (at::parallel_for, so torch.set_num_threads applies), per-worker
// buffers and their reduction. The Python layer is flexcore/core/ops/cpu.py.
// Light headers, not <torch/extension.h> (the whole C++ API): a 10-20 s compile per file
// instead of ~50 s, which is most of the set-up's build time.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/csrc/utils/pybind.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "gridding_cpu.h"
#include "rigidity_cpu.h"
#include "splat_cpu.h"

namespace {

using flexcore::cpu::Item;
using flexcore::cpu::kGroup;
using flexcore::cpu::Problem;

void check_tensor(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.device().is_cpu(), "flexcore splat (cpu): ", name, " must be a CPU tensor, got ",
              t.device());
  TORCH_CHECK(t.scalar_type() == dtype, "flexcore splat (cpu): ", name, " must be ", dtype,
              ", got ", t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), "flexcore splat (cpu): ", name, " must be contiguous");
}

Problem make_problem(const at::Tensor& density, const at::Tensor& coords, const at::Tensor& vidx,
                     const at::Tensor& bary, const std::optional<at::Tensor>& displacements,
                     const at::Tensor& rotations, int64_t image_size,
                     const std::optional<at::Tensor>& displacement_rows = std::nullopt) {
  check_tensor(density, "density", at::kFloat);
  check_tensor(coords, "coords", at::kFloat);
  check_tensor(vidx, "vertex_index", at::kInt);
  check_tensor(bary, "barycentric", at::kFloat);
  check_tensor(rotations, "rotations", at::kFloat);
  const int64_t m = density.size(0);
  TORCH_CHECK(density.dim() == 1, "flexcore splat (cpu): density must be (M,)");
  TORCH_CHECK(coords.dim() == 2 && coords.size(0) == m && coords.size(1) == 3,
              "flexcore splat (cpu): coords must be (", m, ", 3), got ", coords.sizes());
  TORCH_CHECK(vidx.dim() == 2 && vidx.size(0) == m && vidx.size(1) == 4,
              "flexcore splat (cpu): vertex_index must be (", m, ", 4), got ", vidx.sizes());
  TORCH_CHECK(bary.sizes() == vidx.sizes(), "flexcore splat (cpu): barycentric must be (", m,
              ", 4), got ", bary.sizes());
  TORCH_CHECK(rotations.dim() == 3 && rotations.size(1) == 3 && rotations.size(2) == 3,
              "flexcore splat (cpu): rotations must be (B, 3, 3), got ", rotations.sizes());
  // cell-record offsets are 32-bit: 8 planes of 4 (D + 1)^2 floats stay below 2^31
  TORCH_CHECK(image_size >= 1 && image_size <= 4096,
              "flexcore splat (cpu): image_size must be in [1, 4096], got ", image_size);
  Problem p;
  p.coords = coords.data_ptr<float>();
  p.vidx = vidx.data_ptr<int32_t>();
  p.bary = bary.data_ptr<float>();
  p.density = density.data_ptr<float>();
  p.m = m;
  p.rot = rotations.data_ptr<float>();
  p.batch = rotations.size(0);
  p.image_size = static_cast<int>(image_size);
  if (displacements.has_value()) {
    const at::Tensor& d = *displacements;
    check_tensor(d, "displacements", at::kFloat);
    if (displacement_rows.has_value()) {
      const at::Tensor& r = *displacement_rows;
      check_tensor(r, "displacement_rows", at::kLong);
      TORCH_CHECK(r.dim() == 1 && r.size(0) == p.batch, "flexcore splat (cpu): "
                  "displacement_rows must be (", p.batch, "), got ", r.sizes());
      TORCH_CHECK(d.dim() == 3 && d.size(0) >= 1 && d.size(2) == 3 && d.size(1) >= 1,
                  "flexcore splat (cpu): displacements must be (rows >= 1, Nv >= 1, 3), got ",
                  d.sizes());
      p.disp_row = r.data_ptr<int64_t>();
      if (p.batch > 0) {
        const auto [lo, hi] = std::minmax_element(p.disp_row, p.disp_row + p.batch);
        TORCH_CHECK(*lo >= 0 && *hi < d.size(0), "flexcore splat (cpu): displacement_rows "
                    "must lie in [0, ", d.size(0), "), got [", *lo, ", ", *hi, "]");
      }
    } else {
      TORCH_CHECK(d.dim() == 3 && d.size(0) == p.batch && d.size(2) == 3 && d.size(1) >= 1,
                  "flexcore splat (cpu): displacements must be (", p.batch, ", Nv >= 1, 3), "
                  "got ", d.sizes());
    }
    p.disp = d.data_ptr<float>();
    p.n_vertices = d.size(1);
    if (m > 0) {  // the kernels index displacements with these: check them once per call
      const int32_t* v = p.vidx;
      const auto [lo, hi] = std::minmax_element(v, v + 4 * m);
      TORCH_CHECK(*lo >= 0 && *hi < p.n_vertices, "flexcore splat (cpu): vertex_index values "
                  "must lie in [0, ", p.n_vertices, ") for displacements of ", p.n_vertices,
                  " vertices, got [", *lo, ", ", *hi, "]");
    }
  }
  return p;
}

// Work split: groups of kGroup images, each cut into `parts` voxel ranges when there are too
// few groups to keep every thread busy; `workers` contiguous blocks of items, one per task of
// at::parallel_for, each with its own scratch and reduction buffers.
struct Plan {
  int64_t groups = 0, parts = 1, items = 0, workers = 1;
  int64_t plane = 0;  // floats of one image's cell plane

  Item item(const Problem& p, int64_t i) const {
    Item it;
    it.group = i / parts;
    const int64_t part = i % parts;
    it.v0 = p.m * part / parts;
    it.v1 = p.m * (part + 1) / parts;
    return it;
  }
  int64_t first(int64_t w) const { return items * w / workers; }
};

Plan make_plan(const Problem& p) {
  Plan plan;
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  plan.groups = (p.batch + kGroup - 1) / kGroup;
  plan.plane = flexcore::cpu::cell_floats(p.image_size);
  // Split voxels only while groups are too few to balance (whole groups per thread, or at
  // least 4 per thread), and keep at least 2048 voxels per part.
  const int64_t max_parts = std::max<int64_t>(1, std::min<int64_t>(threads, p.m / 2048));
  while (plan.parts < max_parts && (plan.groups * plan.parts) % threads != 0 &&
         plan.groups * plan.parts < 4 * threads) {
    ++plan.parts;
  }
  plan.items = plan.groups * plan.parts;
  plan.workers = std::max<int64_t>(1, std::min(threads, plan.items));
  return plan;
}

// Images [g] (D x D) from cell planes [g]: pixel (y, x) is corner 00 of cell (y + 1, x + 1),
// 01 of (y + 1, x), 10 of (y, x + 1) and 11 of (y, x). Added into dst or copied.
void images_from_cells(const float* cells, int d, int64_t n, float* dst, bool add) {
  const int64_t c = d + 1, plane = flexcore::cpu::cell_floats(d);
  for (int64_t g = 0; g < n; ++g) {
    const float* q = cells + g * plane;
    for (int y = 0; y < d; ++y) {
      const float* below = q + 4 * (y + 1) * c;  // cells (y + 1, .)
      const float* above = q + 4 * y * c;        // cells (y, .)
      float* out = dst + (g * d + y) * d;
      for (int x = 0; x < d; ++x) {
        const float v = below[4 * (x + 1)] + below[4 * x + 1] + above[4 * (x + 1) + 2] +
                        above[4 * x + 3];
        out[x] = add ? out[x] + v : v;
      }
    }
  }
}

// Cell planes [g] from grad images [g] (D x D; images at or past `valid` are zero): record
// (iy, ix) holds the padded pixels (iy, ix), (iy, ix + 1), (iy + 1, ix), (iy + 1, ix + 1),
// padded pixel (y + 1, x + 1) being image pixel (y, x) and the border zero.
void cells_from_images(const float* images, int d, int64_t valid, float* cells) {
  const int64_t c = d + 1, plane = flexcore::cpu::cell_floats(d);
  auto pix = [&](int64_t g, int64_t py, int64_t px) {
    return (g < valid && py >= 1 && py <= d && px >= 1 && px <= d)
               ? images[(g * d + py - 1) * d + px - 1]
               : 0.f;
  };
  for (int64_t g = 0; g < kGroup; ++g) {
    float* q = cells + g * plane;
    for (int64_t iy = 0; iy < c; ++iy) {
      for (int64_t ix = 0; ix < c; ++ix) {
        float* r = q + 4 * (iy * c + ix);
        r[0] = pix(g, iy, ix);
        r[1] = pix(g, iy, ix + 1);
        r[2] = pix(g, iy + 1, ix);
        r[3] = pix(g, iy + 1, ix + 1);
      }
    }
  }
}

at::Tensor forward(const at::Tensor& density, const at::Tensor& coords, const at::Tensor& vidx,
                   const at::Tensor& bary, const std::optional<at::Tensor>& displacements,
                   const at::Tensor& rotations, int64_t image_size,
                   const std::optional<at::Tensor>& displacement_rows) {
  const Problem p = make_problem(density, coords, vidx, bary, displacements, rotations,
                                 image_size, displacement_rows);
  const int d = p.image_size;
  const auto opts = density.options();
  if (p.batch == 0 || p.m == 0) return at::zeros({p.batch, d, d}, opts);
  const Plan plan = make_plan(p);
  const int64_t padded_batch = plan.groups * kGroup;
  // One group per item: each image is written once, by one worker. Several parts: each
  // worker adds into its own copy of the images, summed afterwards.
  at::Tensor out = plan.parts == 1 ? at::empty({padded_batch, d, d}, opts)
                                   : at::zeros({plan.workers, padded_batch, d, d}, opts);
  float* out_ptr = out.data_ptr<float>();
  const int64_t image = static_cast<int64_t>(d) * d;
  at::parallel_for(0, plan.workers, 1, [&](int64_t w_begin, int64_t w_end) {
    std::vector<float> cells(kGroup * plan.plane);
    std::vector<float> proj(p.disp ? flexcore::cpu::proj_floats(p.n_vertices) : 0);
    for (int64_t w = w_begin; w < w_end; ++w) {
      float* mine = plan.parts == 1 ? out_ptr : out_ptr + w * padded_batch * image;
      for (int64_t i = plan.first(w); i < plan.first(w + 1); ++i) {
        const Item it = plan.item(p, i);
        std::fill(cells.begin(), cells.end(), 0.f);
        flexcore::cpu::forward_item(p, it, cells.data(), proj.data());
        images_from_cells(cells.data(), d, kGroup, mine + it.group * kGroup * image,
                          plan.parts != 1);
      }
    }
  });
  if (plan.parts != 1) out = out.sum(0);
  return out.narrow(0, 0, p.batch).contiguous();
}

std::vector<at::Tensor> backward(const at::Tensor& grad_out, const at::Tensor& density,
                                 const at::Tensor& coords, const at::Tensor& vidx,
                                 const at::Tensor& bary,
                                 const std::optional<at::Tensor>& displacements,
                                 const at::Tensor& rotations, int64_t image_size,
                                 bool need_grad_density, bool need_grad_displacements) {
  const Problem p =
      make_problem(density, coords, vidx, bary, displacements, rotations, image_size);
  check_tensor(grad_out, "grad_out", at::kFloat);
  const int d = p.image_size;
  TORCH_CHECK(grad_out.dim() == 3 && grad_out.size(0) == p.batch && grad_out.size(1) == d &&
                  grad_out.size(2) == d,
              "flexcore splat (cpu): grad_out must be (", p.batch, ", ", d, ", ", d, "), got ",
              grad_out.sizes());
  TORCH_CHECK(!need_grad_displacements || p.disp != nullptr,
              "flexcore splat (cpu): displacement gradients need displacements");
  const auto opts = density.options();
  at::Tensor grad_density = at::zeros({need_grad_density ? p.m : 0}, opts);
  at::Tensor grad_disp =
      at::zeros({need_grad_displacements ? p.batch : 0, p.n_vertices, 3}, opts);
  if (p.batch == 0 || p.m == 0 || !(need_grad_density || need_grad_displacements)) {
    return {grad_density, grad_disp};
  }
  const Plan plan = make_plan(p);
  const int64_t nproj = flexcore::cpu::proj_floats(p.n_vertices);
  // d loss / d density: one row per worker. d loss / d P: one block per group ([v][c][g]),
  // one copy per worker when groups are split into parts.
  at::Tensor gd_rows = need_grad_density ? at::zeros({plan.workers, p.m}, opts) : at::Tensor();
  at::Tensor gp_blocks;
  if (need_grad_displacements) {
    gp_blocks = at::zeros({plan.parts == 1 ? 1 : plan.workers, plan.groups, nproj}, opts);
  }
  const float* gout = grad_out.data_ptr<float>();
  const int64_t image = static_cast<int64_t>(d) * d;
  at::parallel_for(0, plan.workers, 1, [&](int64_t w_begin, int64_t w_end) {
    std::vector<float> cells(kGroup * plan.plane);
    std::vector<float> proj(p.disp ? nproj : 0);
    for (int64_t w = w_begin; w < w_end; ++w) {
      float* gd = need_grad_density ? gd_rows.data_ptr<float>() + w * p.m : nullptr;
      float* gp = nullptr;
      if (need_grad_displacements) {
        gp = gp_blocks.data_ptr<float>() + (plan.parts == 1 ? 0 : w) * plan.groups * nproj;
      }
      int64_t staged = -1;
      for (int64_t i = plan.first(w); i < plan.first(w + 1); ++i) {
        const Item it = plan.item(p, i);
        if (it.group != staged) {  // the group's grad images as cell records
          const int64_t b0 = it.group * kGroup;
          cells_from_images(gout + b0 * image, d, p.batch - b0, cells.data());
          staged = it.group;
        }
        flexcore::cpu::backward_item(p, it, cells.data(), gd,
                                     gp ? gp + it.group * nproj : nullptr, proj.data());
      }
    }
  });
  if (need_grad_density) grad_density = gd_rows.sum(0);
  if (need_grad_displacements) {
    // d loss / d disp[b, v] = A_b[:2]^T (d loss / d P[b, v])
    const at::Tensor blocks = plan.parts == 1 ? gp_blocks[0] : gp_blocks.sum(0);
    const float* gpp = blocks.data_ptr<float>();
    float* out = grad_disp.data_ptr<float>();
    const int64_t nv = p.n_vertices;
    at::parallel_for(0, p.batch, 1, [&](int64_t b_begin, int64_t b_end) {
      for (int64_t b = b_begin; b < b_end; ++b) {
        const float* a = p.rot + b * 9;
        const float* src = gpp + (b / kGroup) * nproj;
        const int64_t g = b % kGroup;
        for (int64_t v = 0; v < nv; ++v) {
          const float gx = src[(2 * v) * kGroup + g], gy = src[(2 * v + 1) * kGroup + g];
          float* dst = out + (b * nv + v) * 3;
          for (int c = 0; c < 3; ++c) dst[c] = gx * a[c] + gy * a[3 + c];
        }
      }
    });
  }
  return {grad_density, grad_disp};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "flexcore push + splat projection, CPU kernels (see flexcore/core/ops/design.md)";
  m.def("forward", &forward, "Splat projection (B, D, D)", py::arg("density"), py::arg("coords"),
        py::arg("vertex_index"), py::arg("barycentric"), py::arg("displacements"),
        py::arg("rotations"), py::arg("image_size"), py::arg("displacement_rows") = py::none());
  m.def("backward", &backward,
        "Gradients [grad_density (M,) or (0,), grad_displacements (B, Nv, 3) or (0, Nv, 3)]",
        py::arg("grad_out"), py::arg("density"), py::arg("coords"), py::arg("vertex_index"),
        py::arg("barycentric"), py::arg("displacements"), py::arg("rotations"),
        py::arg("image_size"), py::arg("need_grad_density"), py::arg("need_grad_displacements"));
  m.def("insert_slices", &flexcore::cpu::insert_slices,
        "Trilinear central-slice insertion into sums (3, P, P, P/2+1), in place",
        py::arg("sums"), py::arg("values"), py::arg("weights"), py::arg("matrices"));
  m.def("rigidity_penalty", &flexcore::cpu::rigidity_penalty,
        "As-rigid-as-possible penalty per image and its gradient in the displacements",
        py::arg("points"), py::arg("cells"), py::arg("edges_inv"), py::arg("weights"),
        py::arg("displacements"), py::arg("need_grad"), py::arg("iterations"));
  m.def("isa", [] { return std::string(flexcore::cpu::isa()); },
        "Instruction set the kernels run with: avx2 or baseline");
  m.def("group_size", [] { return kGroup; }, "Images per group (one vector lane each)");
}
