"""Optional install-time build of the CUDA kernels (everything else is in pyproject.toml).

A plain ``pip install .`` builds nothing extra. With ``FLEXCORE_BUILD_CUDA=1`` the extension
``flexcore._splat_cuda`` is compiled from ``flexcore/core/ops/csrc`` against the installed torch::

    FLEXCORE_BUILD_CUDA=1 pip install --no-build-isolation -e .

(``--no-build-isolation`` so that the build sees the torch it will run with). Without the
prebuilt module, ``flexcore.core.ops.cuda.load_extension`` compiles the same sources on first use.
"""

import os

from setuptools import setup

ext_modules = []
cmdclass = {}
if os.environ.get("FLEXCORE_BUILD_CUDA", "") == "1":
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    csrc = os.path.join("flexcore", "core", "ops", "csrc")
    ext_modules.append(CUDAExtension(
        name="flexcore._splat_cuda",
        sources=[os.path.join(csrc, "splat.cu"), os.path.join(csrc, "bindings.cpp")],
        extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3", "-lineinfo"]},
    ))
    cmdclass["build_ext"] = BuildExtension

setup(ext_modules=ext_modules, cmdclass=cmdclass)
