// Torch bindings of the push + splat kernels: argument checks, output allocation, launch on
// the current stream. The Python layer (flexcore/core/ops/cuda.py) builds the slot layout.
#include <torch/extension.h>

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "splat.h"

namespace {

using flexcore::SplatGeometry;
using flexcore::SplatImages;
using flexcore::SplatPlan;
using flexcore::SplatTuning;
using flexcore::SplatVariant;

#define SPLAT_CHECK_CUDA(expr)                                                      \
  do {                                                                              \
    const cudaError_t err_ = (expr);                                                \
    TORCH_CHECK(err_ == cudaSuccess, "flexcore splat: ", #expr, " failed: ",       \
                cudaGetErrorName(err_), " (", cudaGetErrorString(err_), ")");       \
  } while (0)

void check_tensor(const at::Tensor& t, const char* name, at::ScalarType dtype,
                  const at::Device& device) {
  TORCH_CHECK(t.is_cuda(), "flexcore splat: ", name, " must be a CUDA tensor, got ", t.device());
  TORCH_CHECK(t.device() == device, "flexcore splat: ", name, " is on ", t.device(),
              ", expected ", device);
  TORCH_CHECK(t.scalar_type() == dtype, "flexcore splat: ", name, " must be ", dtype, ", got ",
              t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), "flexcore splat: ", name, " must be contiguous");
}

void check_aligned16(const at::Tensor& t, const char* name) {
  TORCH_CHECK(reinterpret_cast<std::uintptr_t>(t.data_ptr()) % 16 == 0, "flexcore splat: ", name,
              " must be 16-byte aligned (a fresh contiguous tensor)");
}

int to_int(int64_t v, const char* what) {
  TORCH_CHECK(v >= 0 && v <= std::numeric_limits<int>::max(), "flexcore splat: ", what, " = ", v,
              " is out of range");
  return static_cast<int>(v);
}

struct Inputs {
  SplatGeometry geo;
  SplatImages img;
  at::Device device = at::Device(at::kCPU);
};

Inputs make_inputs(const at::Tensor& slot_cd, const at::Tensor& slot_bary,
                   const at::Tensor& piece_vidx, int64_t piece_len,
                   const std::optional<at::Tensor>& displacements, const at::Tensor& rotations,
                   int64_t image_size) {
  Inputs in;
  in.device = slot_cd.device();
  check_tensor(slot_cd, "slot_cd", at::kFloat, in.device);
  check_tensor(slot_bary, "slot_bary", at::kFloat, in.device);
  check_tensor(piece_vidx, "piece_vidx", at::kInt, in.device);
  check_tensor(rotations, "rotations", at::kFloat, in.device);
  TORCH_CHECK(piece_len >= 1, "flexcore splat: piece_len must be >= 1, got ", piece_len);
  TORCH_CHECK(image_size >= 1 && image_size <= 16384,
              "flexcore splat: image_size must be in [1, 16384], got ", image_size);
  TORCH_CHECK(piece_vidx.dim() == 2 && piece_vidx.size(1) == 4 && piece_vidx.size(0) % 32 == 0,
              "flexcore splat: piece_vidx must be (32 * n_tiles, 4), got ", piece_vidx.sizes());
  const int64_t n_slots = piece_vidx.size(0) * piece_len;
  TORCH_CHECK(slot_cd.dim() == 2 && slot_cd.size(0) == n_slots && slot_cd.size(1) == 4,
              "flexcore splat: slot_cd must be (", n_slots, ", 4), got ", slot_cd.sizes());
  TORCH_CHECK(slot_bary.sizes() == slot_cd.sizes(), "flexcore splat: slot_bary must be (",
              n_slots, ", 4), got ", slot_bary.sizes());
  TORCH_CHECK(rotations.dim() == 3 && rotations.size(1) == 3 && rotations.size(2) == 3,
              "flexcore splat: rotations must be (B, 3, 3), got ", rotations.sizes());
  check_aligned16(slot_cd, "slot_cd");
  check_aligned16(slot_bary, "slot_bary");
  check_aligned16(piece_vidx, "piece_vidx");
  const int64_t batch = rotations.size(0);

  in.geo.slot_cd = reinterpret_cast<const float4*>(slot_cd.data_ptr<float>());
  in.geo.slot_bary = reinterpret_cast<const float4*>(slot_bary.data_ptr<float>());
  in.geo.piece_vidx = reinterpret_cast<const int4*>(piece_vidx.data_ptr<int>());
  in.geo.n_tiles = to_int(piece_vidx.size(0) / 32, "n_tiles");
  in.geo.piece_len = to_int(piece_len, "piece_len");
  to_int(n_slots, "n_slots");  // slot indices are 64-bit in the kernels; counts stay int-sized
  in.img.rotations = rotations.data_ptr<float>();
  in.img.batch = to_int(batch, "batch");
  in.img.image_size = static_cast<int>(image_size);
  if (displacements.has_value()) {
    const at::Tensor& d = *displacements;
    check_tensor(d, "displacements", at::kFloat, in.device);
    TORCH_CHECK(d.dim() == 3 && d.size(0) == batch && d.size(2) == 3 && d.size(1) >= 1,
                "flexcore splat: displacements must be (", batch, ", Nv >= 1, 3), got ",
                d.sizes());
    TORCH_CHECK(d.size(1) * 3 <= std::numeric_limits<int>::max(),
                "flexcore splat: too many vertices: ", d.size(1));
    in.img.displacements = d.data_ptr<float>();
    in.img.n_vertices = static_cast<int>(d.size(1));
  }
  return in;
}

SplatTuning make_tuning(int64_t images_per_block, int64_t threads, int64_t tiles_per_block,
                        int64_t path) {
  SplatTuning t;
  t.images_per_block = to_int(images_per_block, "images_per_block");
  t.threads = to_int(threads, "threads");
  t.tiles_per_block = to_int(tiles_per_block, "tiles_per_block");
  t.path = to_int(path, "path");
  return t;
}

SplatPlan make_plan(const SplatVariant& variant, const Inputs& in, const SplatTuning& tuning) {
  SplatPlan plan;
  const cudaError_t err = flexcore::splat_plan(variant, in.img.batch, in.img.image_size,
                                               in.geo.n_tiles, in.geo.piece_len, tuning, &plan);
  TORCH_CHECK(err == cudaSuccess, "flexcore splat: no launch plan for batch=", in.img.batch,
              " image_size=", in.img.image_size, " images_per_block=", tuning.images_per_block,
              " threads=", tuning.threads, " tiles_per_block=", tuning.tiles_per_block,
              " path=", tuning.path, ": ", cudaGetErrorName(err), " (", cudaGetErrorString(err),
              ")");
  return plan;
}

// Sum of |density| over each voxel chunk of the plan (the fixed-point forward's scale):
// chunk c holds tiles [c, c + 1) * tiles_per_block, the last one fewer.
at::Tensor chunk_abs_mass(const at::Tensor& slot_cd, const SplatPlan& plan, int n_tiles,
                          int piece_len) {
  const int64_t chunk_tiles = std::min(plan.tiles_per_block, n_tiles);
  const int64_t chunk_slots = chunk_tiles * 32 * piece_len;
  const int64_t padded = static_cast<int64_t>(plan.n_chunks) * chunk_slots;
  at::Tensor dens = slot_cd.select(1, 3).abs();
  if (padded > dens.size(0)) dens = at::constant_pad_nd(dens, {0, padded - dens.size(0)});
  return dens.reshape({plan.n_chunks, chunk_slots}).sum(1);
}

at::Tensor forward(const at::Tensor& slot_cd, const at::Tensor& slot_bary,
                   const at::Tensor& piece_vidx, int64_t piece_len,
                   const std::optional<at::Tensor>& displacements, const at::Tensor& rotations,
                   int64_t image_size, int64_t images_per_block, int64_t threads,
                   int64_t tiles_per_block, int64_t path) {
  const c10::cuda::CUDAGuard guard(slot_cd.device());
  const Inputs in = make_inputs(slot_cd, slot_bary, piece_vidx, piece_len, displacements,
                                rotations, image_size);
  SplatVariant variant;
  variant.has_disp = in.img.displacements != nullptr;
  const SplatPlan plan =
      make_plan(variant, in, make_tuning(images_per_block, threads, tiles_per_block, path));
  const auto opts = slot_cd.options();
  const std::vector<int64_t> shape = {in.img.batch, image_size, image_size};
  at::Tensor out = plan.accumulate ? at::zeros(shape, opts) : at::empty(shape, opts);
  if (in.img.batch > 0 && in.geo.n_tiles > 0) {
    at::Tensor chunk_mass;
    const float* mass = nullptr;
    if (plan.path == flexcore::kPathFixed) {
      chunk_mass = chunk_abs_mass(slot_cd, plan, in.geo.n_tiles, in.geo.piece_len);
      mass = chunk_mass.data_ptr<float>();
    }
    SPLAT_CHECK_CUDA(flexcore::splat_forward(in.geo, in.img, plan, mass, out.data_ptr<float>(),
                                             c10::cuda::getCurrentCUDAStream().stream()));
  }
  return out;
}

std::vector<at::Tensor> backward(const at::Tensor& grad_out, const at::Tensor& slot_cd,
                                 const at::Tensor& slot_bary, const at::Tensor& piece_vidx,
                                 int64_t piece_len,
                                 const std::optional<at::Tensor>& displacements,
                                 const at::Tensor& rotations, int64_t image_size,
                                 bool need_grad_density, bool need_grad_displacements,
                                 int64_t images_per_block, int64_t threads,
                                 int64_t tiles_per_block, int64_t path) {
  const c10::cuda::CUDAGuard guard(slot_cd.device());
  const Inputs in = make_inputs(slot_cd, slot_bary, piece_vidx, piece_len, displacements,
                                rotations, image_size);
  check_tensor(grad_out, "grad_out", at::kFloat, in.device);
  TORCH_CHECK(grad_out.dim() == 3 && grad_out.size(0) == in.img.batch &&
                  grad_out.size(1) == image_size && grad_out.size(2) == image_size,
              "flexcore splat: grad_out must be (", in.img.batch, ", ", image_size, ", ",
              image_size, "), got ", grad_out.sizes());
  TORCH_CHECK(!need_grad_displacements || in.img.displacements != nullptr,
              "flexcore splat: displacement gradients need displacements");
  const auto opts = slot_cd.options();
  at::Tensor grad_slot = at::empty({0}, opts);
  at::Tensor grad_proj = at::empty({0}, opts);
  if (!need_grad_density && !need_grad_displacements) return {grad_slot, grad_proj};

  SplatVariant variant;
  variant.backward = true;
  variant.has_disp = in.img.displacements != nullptr;
  variant.need_grad_density = need_grad_density;
  variant.need_grad_displacements = need_grad_displacements;
  const SplatPlan plan =
      make_plan(variant, in, make_tuning(images_per_block, threads, tiles_per_block, path));
  const int64_t n_slots = slot_cd.size(0);
  flexcore::SplatBackwardOutputs outs;
  if (need_grad_density) {
    grad_slot = plan.accumulate || in.img.batch == 0 ? at::zeros({n_slots}, opts)
                                                     : at::empty({n_slots}, opts);
    outs.grad_slot = grad_slot.data_ptr<float>();
  }
  if (need_grad_displacements) {
    grad_proj = at::zeros({in.img.batch, static_cast<int64_t>(in.img.n_vertices), 2}, opts);
    outs.grad_proj = grad_proj.data_ptr<float>();
  }
  if (in.img.batch > 0 && in.geo.n_tiles > 0) {
    SPLAT_CHECK_CUDA(flexcore::splat_backward(in.geo, in.img, plan, grad_out.data_ptr<float>(),
                                              outs, c10::cuda::getCurrentCUDAStream().stream()));
  }
  return {grad_slot, grad_proj};
}

// The launch plan the kernels would use (for benchmarks and logs).
py::dict describe_plan(int64_t batch, int64_t image_size, int64_t n_tiles, int64_t piece_len,
              bool has_disp, bool backward, bool need_grad_density, bool need_grad_displacements,
              int64_t images_per_block, int64_t threads, int64_t tiles_per_block, int64_t path,
              int64_t device_index) {
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_index));
  SplatVariant variant;
  variant.backward = backward;
  variant.has_disp = has_disp;
  variant.need_grad_density = need_grad_density;
  variant.need_grad_displacements = need_grad_displacements;
  Inputs in;
  in.img.batch = to_int(batch, "batch");
  in.img.image_size = to_int(image_size, "image_size");
  in.geo.n_tiles = to_int(n_tiles, "n_tiles");
  in.geo.piece_len = to_int(piece_len, "piece_len");
  const SplatPlan p =
      make_plan(variant, in, make_tuning(images_per_block, threads, tiles_per_block, path));
  py::dict d;
  d["images_per_block"] = p.images_per_block;
  d["threads"] = p.threads;
  d["tiles_per_block"] = p.tiles_per_block;
  d["path"] = p.path == flexcore::kPathShared ? "shared"
              : p.path == flexcore::kPathFixed  ? "fixed"
                                                : "global";
  d["n_groups"] = p.n_groups;
  d["n_chunks"] = p.n_chunks;
  d["smem_bytes"] = p.smem_bytes;
  d["blocks_per_sm"] = p.blocks_per_sm;
  d["accumulate"] = p.accumulate;
  return d;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "flexcore push + splat projection kernels (see flexcore/core/ops/design.md)";
  m.def("forward", &forward, "Splat projection (B, D, D) from the slot layout",
        py::arg("slot_cd"), py::arg("slot_bary"), py::arg("piece_vidx"), py::arg("piece_len"),
        py::arg("displacements"), py::arg("rotations"), py::arg("image_size"),
        py::arg("images_per_block") = 0, py::arg("threads") = 0,
        py::arg("tiles_per_block") = 0, py::arg("path") = 0);
  m.def("backward", &backward,
        "Gradients [grad_slot (n_slots,), grad_proj (B, Nv, 2)] of the splat projection",
        py::arg("grad_out"), py::arg("slot_cd"), py::arg("slot_bary"), py::arg("piece_vidx"),
        py::arg("piece_len"), py::arg("displacements"), py::arg("rotations"),
        py::arg("image_size"), py::arg("need_grad_density"), py::arg("need_grad_displacements"),
        py::arg("images_per_block") = 0, py::arg("threads") = 0,
        py::arg("tiles_per_block") = 0, py::arg("path") = 0);
  m.def("plan", &describe_plan, "Launch plan (dict) for the given sizes and tuning", py::arg("batch"),
        py::arg("image_size"), py::arg("n_tiles"), py::arg("piece_len"), py::arg("has_disp"),
        py::arg("backward"), py::arg("need_grad_density") = false,
        py::arg("need_grad_displacements") = false, py::arg("images_per_block") = 0,
        py::arg("threads") = 0, py::arg("tiles_per_block") = 0, py::arg("path") = 0,
        py::arg("device_index") = 0);
}
