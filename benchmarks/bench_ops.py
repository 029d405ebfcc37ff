"""Time the push + splat projection, forward and forward + backward, in images per second.

Usage:
  python benchmarks/bench_ops.py --device cpu --out cpu.json            # CPU: reference vs
                                                                        # native kernel
  python benchmarks/bench_ops.py --device cuda --sweep --out gpu.json    # kernel (+ tuning
                                                                        # sweep) and reference
  python benchmarks/bench_ops.py --device cuda --paths fixed global      # auto vs these paths
  python benchmarks/bench_ops.py --device all --sweep --recon --out all.json
  python benchmarks/bench_ops.py --summary all.json                     # table from a JSON

Inputs are realistic: a smooth blob mask covering ``--fraction`` of the box, a regular
20-cell lattice split into 6 tetrahedra per cube (Kuhn), voxels sorted by tetrahedron (as the
mesh code provides them), random poses and displacements of about a voxel. Training sizes:
D ∈ {64, 128}, B ∈ {32, 128, 512}, both gradients. ``--recon``: D ∈ {192, 256}, B = 64,
displacements present, gradient for the density only. CUDA times use events after warm-up,
median of ``--repeat`` runs rotating over 3 input sets. CPU: the PyTorch reference and the
native C++ kernel (``flexcore.core.ops.cpu``) at ``--cpu-sizes`` (default D 32 and 64, i.e.
M ≈ 6 500 and 52 000) with ``--cpu-batch`` images, wall clock, **best** of ``--cpu-repeat``
runs (other jobs on a shared machine only ever add time), on ``--threads`` torch threads.
"""

from __future__ import annotations

import flexcore  # noqa: F401  (first: the OpenMP wait policy it sets must precede torch)

# isort: split
import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from flexcore.core.mesh.synthetic import lattice_geometry
from flexcore.core.ops import VoxelGeometry
from flexcore.core.ops.reference import splat_project_reference

N_CELLS = 20


def blob_mask(size: int, fraction: float, seed: int = 0) -> np.ndarray:
    """``[z, y, x]`` mask of the top ``fraction`` of a sum of 30 Gaussian blobs."""
    rng = np.random.default_rng(seed)
    g = (np.arange(size) - size // 2).astype(np.float32)
    z, y, x = np.meshgrid(g, g, g, indexing="ij", sparse=True)
    field = np.zeros((size, size, size), dtype=np.float32)
    for _ in range(30):
        c = rng.normal(size=3)
        c *= 0.25 * size * rng.uniform() ** (1 / 3) / np.linalg.norm(c)
        s = rng.uniform(0.06, 0.1) * size
        field += np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / (2 * s * s))
    return field >= np.quantile(field, 1.0 - fraction)


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], 1)


class Problem:
    def __init__(self, size: int, fraction: float, device: str, seed: int = 0):
        coords, vidx, bary, verts = lattice_geometry(size, N_CELLS, blob_mask(size, fraction, seed))
        rng = np.random.default_rng(seed + 1)
        t = lambda a, dtype: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
        self.size, self.device, self.nv, self.m = size, device, len(verts), len(coords)
        self.geometry = VoxelGeometry(t(coords, torch.float32), t(vidx, torch.int32),
                                      t(bary, torch.float32))
        self.density = t(rng.uniform(0.5, 1.5, self.m), torch.float32)
        runs = 1 + np.count_nonzero((vidx[1:] != vidx[:-1]).any(1))
        self.mean_run = self.m / runs
        self.rng = rng

    def batches(self, b: int, n_sets: int = 3):
        sets = []
        for _ in range(n_sets):
            rot = torch.as_tensor(random_rotations(b, self.rng), dtype=torch.float32,
                                  device=self.device)
            disp = torch.as_tensor(self.rng.normal(0, 1.0, (b, self.nv, 3)), dtype=torch.float32,
                                   device=self.device)
            w = torch.randn(b, self.size, self.size, device=self.device)
            sets.append((rot, disp, w))
        return sets


def run_once(op, prob: Problem, rot, disp, w, backward: bool, grad_disp: bool):
    dens = prob.density.detach().requires_grad_(backward)
    dsp = disp.detach().requires_grad_(backward and grad_disp)
    img = op(dens, prob.geometry, dsp, rot, prob.size)
    if backward:
        torch.autograd.backward(img, grad_tensors=w)
    return img


def time_op(op, prob: Problem, sets, backward: bool, grad_disp: bool, warmup: int,
            repeat: int) -> float:
    """Median milliseconds of one call (forward, or forward + backward)."""
    cuda = prob.device.startswith("cuda")
    for i in range(warmup):
        run_once(op, prob, *sets[i % len(sets)], backward, grad_disp)
    times = []
    for i in range(repeat):
        args = sets[i % len(sets)]
        if cuda:
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run_once(op, prob, *args, backward, grad_disp)
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop))
        else:
            t0 = time.perf_counter()
            run_once(op, prob, *args, backward, grad_disp)
            times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def time_cpu(op, prob: Problem, sets, backward: bool, grad_disp: bool,
             repeat: int) -> tuple[float, float]:
    """Wall milliseconds of the fastest of ``repeat`` calls after one warm-up call, and the
    process CPU milliseconds (all threads) of that call: on a busy machine the wall time
    includes waiting for a core, the CPU time does not."""
    run_once(op, prob, *sets[0], backward, grad_disp)
    best = (float("inf"), 0.0)
    for i in range(repeat):
        args = sets[i % len(sets)]
        t0, c0 = time.perf_counter(), time.process_time()
        run_once(op, prob, *args, backward, grad_disp)
        best = min(best, (1e3 * (time.perf_counter() - t0), 1e3 * (time.process_time() - c0)))
    return best


def kernel_op(tuning):
    from flexcore.core.ops.cuda import splat_project_cuda

    def op(*args):
        return splat_project_cuda(*args, tuning=tuning)

    return op


def reference_op(*args):
    return splat_project_reference(*args)


def native_cpu_op(*args):
    from flexcore.core.ops.cpu import splat_project_cpu

    return splat_project_cpu(*args)


def sweep_tunings(prob: Problem, b: int, grad_disp: bool):
    """Auto, then one knob at a time away from auto."""
    from flexcore.core.ops.cuda import SplatTuning, build_slot_layout, launch_plan

    layout = build_slot_layout(prob.geometry.vertex_index)
    plan = launch_plan(b, prob.size, layout.n_tiles, layout.piece_len, has_disp=True,
                       backward=True, need_grad_density=True, need_grad_displacements=grad_disp)
    yield "auto", SplatTuning()
    for g in (1, 2, 3, 4):
        if g != plan["images_per_block"]:
            yield f"G={g}", SplatTuning(images_per_block=g)
    for t in (128, 256, 512):
        if t != plan["threads"]:
            yield f"threads={t}", SplatTuning(threads=t)
    for r in (2, 4, 8, 16, 32):
        if r != layout.piece_len:
            yield f"piece={r}", SplatTuning(piece_len=r)
    for other in ("shared", "global", "fixed"):
        if other != plan["path"]:
            yield f"path={other}", SplatTuning(path=other)
    if plan["path"] == "shared":  # the fixed-point forward may prefer other image counts
        for g in (1, 2, 4):
            yield f"fixed G={g}", SplatTuning(path="fixed", images_per_block=g)
    for f in (0.25, 4.0):
        tiles = max(1, int(plan["tiles_per_block"] * f))
        yield f"tiles={tiles}", SplatTuning(tiles_per_block=tiles)


def record(rows: list[dict], row: dict, args, meta: dict) -> None:
    """Append a finished row, print it and rewrite the JSON (a killed run keeps its rows)."""
    rows.append(finish(row))
    print(fmt_row(rows[-1]), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(dict(meta=meta, rows=rows), indent=1, default=str))


def bench_size(prob: Problem, b: int, args, impls, rows, meta, grad_disp=True):
    sets = prob.batches(b)
    base = dict(D=prob.size, B=b, M=prob.m, Nv=prob.nv, mean_run=round(prob.mean_run, 1),
                grad_displacements=grad_disp, device=prob.device)
    cuda = prob.device.startswith("cuda")
    if not cuda:  # reference and native kernel, best of cpu_repeat after one warm-up call
        base["threads"] = torch.get_num_threads()
        for impl, op in (("reference", reference_op), ("native", native_cpu_op)):
            if impl not in impls:
                continue
            row = dict(base, impl=impl, config="-", stat="best")
            try:
                row["fwd_ms"], row["fwd_cpu_ms"] = time_cpu(op, prob, sets, False, grad_disp,
                                                            args.cpu_repeat)
                row["fwdbwd_ms"], row["fwdbwd_cpu_ms"] = time_cpu(op, prob, sets, True,
                                                                  grad_disp, args.cpu_repeat)
            except (RuntimeError, ValueError) as exc:
                row["error"] = str(exc).splitlines()[0][:200]
            record(rows, row, args, meta)
        return
    if "reference" in impls:
        rep = max(2, args.repeat // 4)
        row = dict(base, impl="reference", config="-", stat="median")
        try:
            row["fwd_ms"] = time_op(reference_op, prob, sets, False, grad_disp, 1, rep)
            row["fwdbwd_ms"] = time_op(reference_op, prob, sets, True, grad_disp, 1, rep)
        except torch.cuda.OutOfMemoryError as exc:
            row["error"] = f"out of memory: {str(exc).splitlines()[0]}"
            torch.cuda.empty_cache()
        record(rows, row, args, meta)
    if "kernel" in impls:
        from flexcore.core.ops.cuda import SplatTuning, build_slot_layout, launch_plan

        configs = (sweep_tunings(prob, b, grad_disp) if args.sweep else
                   [("auto", SplatTuning())] + [(f"path={p}", SplatTuning(path=p))
                                                for p in args.paths])
        for name, tuning in configs:
            row = dict(base, impl="kernel", config=name, stat="median")
            try:
                layout = build_slot_layout(prob.geometry.vertex_index, tuning.piece_len)
                row["piece_len"] = layout.piece_len
                row["plan_fwd"] = launch_plan(b, prob.size, layout.n_tiles, layout.piece_len,
                                              has_disp=True, tuning=tuning)
                row["plan_bwd"] = launch_plan(b, prob.size, layout.n_tiles, layout.piece_len,
                                              has_disp=True, backward=True,
                                              need_grad_density=True,
                                              need_grad_displacements=grad_disp, tuning=tuning)
                op = kernel_op(tuning)
                row["fwd_ms"] = time_op(op, prob, sets, False, grad_disp, args.warmup, args.repeat)
                row["fwdbwd_ms"] = time_op(op, prob, sets, True, grad_disp, args.warmup,
                                           args.repeat)
            except (RuntimeError, ValueError) as exc:
                row["error"] = str(exc).splitlines()[0][:200]
            record(rows, row, args, meta)


def finish(row: dict) -> dict:
    for key in ("fwd", "fwdbwd"):
        ms = row.get(f"{key}_ms")
        if ms:
            row[f"{key}_img_per_s"] = row["B"] / (ms * 1e-3)
        cpu_ms = row.get(f"{key}_cpu_ms")
        if cpu_ms:  # images per second of one busy core
            row[f"{key}_img_per_cpu_s"] = row["B"] / (cpu_ms * 1e-3)
            row[f"{key}_gvox_img_per_s"] = row["B"] * row["M"] / (ms * 1e-3) / 1e9
    return row


def fmt_row(r: dict) -> str:
    if "error" in r:
        return (f"{r['device']:>6} {r['impl']:>9} {r['config']:>14} D={r['D']:<3} B={r['B']:<3} "
                f"ERROR {r['error']}")
    plan = r.get("plan_bwd")
    p = (f" [{plan['path']} G={plan['images_per_block']} T={plan['threads']} "
         f"tiles={plan['tiles_per_block']} grid={plan['n_groups']}x{plan['n_chunks']} "
         f"R={r.get('piece_len')}]") if plan else ""
    return (f"{r['device']:>6} {r['impl']:>9} {r['config']:>14} D={r['D']:<3} B={r['B']:<3} "
            f"M={r['M']:<7} fwd {r['fwd_ms']:8.3f} ms {r['fwd_img_per_s']:10.0f} img/s | "
            f"fwd+bwd {r['fwdbwd_ms']:8.3f} ms {r['fwdbwd_img_per_s']:10.0f} img/s "
            f"({r['fwdbwd_gvox_img_per_s']:.1f} Gvox·img/s){p}")


def cpu_summary(rows: list[dict]) -> str:
    """One line per CPU size: reference and native kernel, forward and forward + backward."""
    cpu = [r for r in rows if r["device"] == "cpu" and "error" not in r]
    keys = sorted({(r["D"], r["B"]) for r in cpu})
    lines = [f"{'D':>4} {'B':>4} {'M':>7} {'thr':>3} {'ref fwd':>9} {'ref f+b':>9} "
             f"{'nat fwd':>9} {'nat f+b':>9} {'x fwd':>7} {'x f+b':>7} {'ref f+b/cpu':>11} "
             f"{'nat f+b/cpu':>11}   (CPU, images/s wall, best of repeats; /cpu: per second "
             "of CPU time)"]
    for d, b in keys:
        sel = {r["impl"]: r for r in cpu if (r["D"], r["B"]) == (d, b)}
        ref, nat = sel.get("reference"), sel.get("native")

        def v(r, key):
            return r.get(key) if r else None

        def f(x, w=9, p=0):
            return f"{x:{w}.{p}f}" if x else f"{'-':>{w}}"

        ratio = [v(nat, k) / v(ref, k) if v(nat, k) and v(ref, k) else None
                 for k in ("fwd_img_per_s", "fwdbwd_img_per_s")]
        any_row = ref or nat
        lines.append(f"{d:4d} {b:4d} {any_row['M']:7d} {any_row.get('threads', 0):3d} "
                     f"{f(v(ref, 'fwd_img_per_s'))} {f(v(ref, 'fwdbwd_img_per_s'))} "
                     f"{f(v(nat, 'fwd_img_per_s'))} {f(v(nat, 'fwdbwd_img_per_s'))} "
                     f"{f(ratio[0], 7, 1)} {f(ratio[1], 7, 1)} "
                     f"{f(v(ref, 'fwdbwd_img_per_cpu_s'), 11)} "
                     f"{f(v(nat, 'fwdbwd_img_per_cpu_s'), 11)}")
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    """One line per size: reference (CPU, GPU), kernel auto and best, fwd+bwd images/s; then
    the CPU table (reference vs native kernel)."""
    text = [gpu_summary(rows)] if any(r["device"] != "cpu" for r in rows) else []
    if any(r["device"] == "cpu" for r in rows):
        text.append(cpu_summary(rows))
    return "\n\n".join(text)


def gpu_summary(rows: list[dict]) -> str:
    keys = sorted({(r["D"], r["B"], r["grad_displacements"]) for r in rows
                   if r["device"] != "cpu"})
    lines = [f"{'D':>4} {'B':>4} {'M':>8} {'grad':>5} {'ref cpu':>9} {'ref gpu':>9} "
             f"{'kern auto':>10} {'kern best':>10} {'best config':>14} {'x ref gpu':>9}"
             "   (forward + backward, images/s)"]

    def ips(r):
        return r.get("fwdbwd_img_per_s") if r else None

    def f(x):
        return f"{x:9.0f}" if x else f"{'-':>9}"

    for d, b, gd in keys:
        sel = [r for r in rows if (r["D"], r["B"], r["grad_displacements"]) == (d, b, gd)
               and r["device"] != "cpu"]
        ref_cpu = next((r for r in rows if r["impl"] == "reference" and r["device"] == "cpu"
                        and r["D"] == d and "error" not in r), None)
        ref_gpu = next((r for r in sel if r["impl"] == "reference" and r["device"] != "cpu"), None)
        kern = [r for r in sel if r["impl"] == "kernel" and "error" not in r]
        auto = next((r for r in kern if r["config"] == "auto"), None)
        best = max(kern, key=ips, default=None)
        speed = ips(best) / ips(ref_gpu) if best and ips(ref_gpu) else None
        lines.append(f"{d:4d} {b:4d} {sel[0]['M']:8d} {'disp' if gd else 'dens':>5} "
                     f"{f(ips(ref_cpu))} "
                     f"{f(ips(ref_gpu))} {f(ips(auto)):>10} {f(ips(best)):>10} "
                     f"{(best['config'] if best else '-'):>14} "
                     f"{(f'{speed:9.1f}' if speed else '-'):>9}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 128, 512])
    ap.add_argument("--cpu-sizes", type=int, nargs="+", default=[32, 64],
                    help="boxes for the CPU rows (reference and native kernel)")
    ap.add_argument("--cpu-batch", type=int, default=64, help="images per call on the CPU")
    ap.add_argument("--cpu-repeat", type=int, default=3,
                    help="timed calls per CPU row after one warm-up; the fastest counts")
    ap.add_argument("--cpu-impls", nargs="+", default=["reference", "native"],
                    choices=["reference", "native"], help="CPU implementations to time")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--fraction", type=float, default=0.2, help="mask fraction of the box")
    ap.add_argument("--sweep", action="store_true", help="sweep the kernel tuning arguments")
    ap.add_argument("--paths", nargs="*", default=["fixed"], choices=["shared", "global", "fixed"],
                    help="without --sweep: kernel paths timed beside the automatic choice")
    ap.add_argument("--recon", action="store_true", help="add reconstruction sizes (D 192, 256)")
    ap.add_argument("--no-reference", action="store_true", help="skip the GPU reference")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=12)
    ap.add_argument("--out", type=Path, help="write all rows as JSON here")
    ap.add_argument("--summary", type=Path, help="print the summary table of a JSON and exit")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    if args.summary:
        print(summary(json.loads(args.summary.read_text())["rows"]))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[dict] = []
    meta = dict(python=sys.version.split()[0], torch=torch.__version__, cuda=torch.version.cuda,
                host=platform.node(), cpu_threads=torch.get_num_threads(),
                date=time.strftime("%Y-%m-%d %H:%M:%S %Z"), command=" ".join(sys.argv),
                load_average_1min=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
                fraction=args.fraction, n_cells=N_CELLS, argv=sys.argv[1:])
    devices = ["cuda", "cpu"] if args.device == "all" else [args.device]
    if "cuda" in devices:
        if not torch.cuda.is_available():
            print("no CUDA device: GPU rows skipped", flush=True)
            devices.remove("cuda")
        else:
            meta["gpu"] = torch.cuda.get_device_name(0)
            from flexcore.core.ops.cuda import load_extension

            meta["extension"] = load_extension() is not None
    if "cpu" in devices and "native" in args.cpu_impls:
        from flexcore.core.ops.cpu import load_extension as load_cpu

        t0 = time.perf_counter()
        native = load_cpu()
        meta["native_cpu"] = native.isa() if native is not None else None
        meta["native_cpu_load_s"] = round(time.perf_counter() - t0, 2)
    for dev in devices:
        cuda = dev != "cpu"
        sizes = args.sizes if cuda else args.cpu_sizes
        batches = args.batches if cuda else [args.cpu_batch]
        impls = list(args.cpu_impls)
        if cuda:
            impls = (["kernel"] if meta.get("extension") else []) + (
                [] if args.no_reference else ["reference"])
        for d in sizes:
            prob = Problem(d, args.fraction, dev)
            print(f"-- {dev}: D={d} M={prob.m} ({prob.m / d ** 3:.1%} of the box) Nv={prob.nv} "
                  f"mean run {prob.mean_run:.1f} voxels", flush=True)
            for b in batches:
                bench_size(prob, b, args, impls, rows, meta)
            del prob
            if cuda:
                torch.cuda.empty_cache()
        if cuda and args.recon:
            for d in (192, 256):
                prob = Problem(d, args.fraction, dev)
                print(f"-- {dev} recon: D={d} M={prob.m} Nv={prob.nv} (density gradient only)",
                      flush=True)
                bench_size(prob, 64, args, impls, rows, meta, grad_disp=False)
                del prob
                torch.cuda.empty_cache()
    print("\n" + (summary(rows) if rows else "no rows"))
    failed = any("error" in r and (r["impl"] == "native" or
                                   (r["impl"] == "kernel" and r["config"] == "auto"))
                 for r in rows)
    return 0 if rows and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
