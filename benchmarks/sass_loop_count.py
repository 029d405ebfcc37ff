"""Static instruction counts of the forward kernels' voxel loops, from their SASS.

Usage:
  nvcc -c -arch=sm_90 -O3 -lineinfo flexcore/core/ops/csrc/splat.cu -o splat.o
  cuobjdump --dump-sass splat.o > splat.sass
  python benchmarks/sass_loop_count.py splat.sass

For each shared-memory forward kernel (G images per block, float or fixed-point planes, with
or without displacements) the voxel loop is taken as the smallest backward-branch loop that
holds every shared atomic between the two block barriers; a loop iteration handles
(shared atomics / 4) voxel-images (the compiler may unroll). Counts are instructions as
issued per thread when every image's point lands in the box; a compare-and-swap loop counts
once (retries are extra).
"""

from __future__ import annotations

import re
import sys


def loop_counts(sass: str):
    for part in re.split(r"\n\s*Function : ", sass)[1:]:
        name = part.split("\n", 1)[0]
        m = re.search(r"splat_forward_kernelILi(\d)ELb(\d)ELb(\d)ELb(\d)E", name)
        if not m or m.group(2) != "1":
            continue
        g, fixed, disp = int(m.group(1)), m.group(3) == "1", m.group(4) == "1"
        ins = [(int(a, 16), t.strip())
               for a, t in re.findall(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", part)]
        bars = [a for a, t in ins if "BAR.SYNC" in t]
        atoms = [a for a, t in ins if "ATOMS" in t and bars[0] < a < bars[1]]
        loops = [(int(target, 16), a) for a, t in ins
                 for target in re.findall(r"BRA (?:\S+, )?0x([0-9a-f]+)", t) if int(target, 16) < a]
        lo, hi = min(((s, e) for s, e in loops if s <= min(atoms) and e >= max(atoms)),
                     key=lambda se: se[1] - se[0])
        body = [t for a, t in ins if lo <= a <= hi]
        per = len(atoms) / 4  # voxel-images per iteration
        conv = sum(1 for t in body if re.search(r"\b(F2I|I2F|FRND)", t))
        yield dict(G=g, planes="fixed" if fixed else "float", displacements=disp,
                   per_voxel_image=len(body) / per, conversions=conv / per,
                   atomics=sorted({t.split()[0] for t in body if "ATOMS" in t}))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__)
        return 2
    for r in sorted(loop_counts(open(argv[0]).read()),
                    key=lambda r: (r["displacements"], r["G"], r["planes"])):
        print(f"G={r['G']} {r['planes']:>5} planes, displacements={int(r['displacements'])}: "
              f"{r['per_voxel_image']:5.1f} instructions per voxel-image, "
              f"{r['conversions']:.1f} conversions, {', '.join(r['atomics'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
