"""Builds flash_mla_rocm: one extension, flash_mla_rocm._C, holding the flash_mla ops for the installed torch.

Every build has the CPU kernels. A ROCm torch adds the gfx942 HIP kernels (kernels/gfx942, --offload-arch from
FLASH_MLA_ROCM_ARCH, default gfx942); a CUDA torch adds the Hopper kernels (kernels/sm90, sm_90a). Set
FLASH_MLA_GPU=0 to build the CPU kernels alone under any torch.
"""

import glob
import os

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
CXX_FLAGS = ["-O3", "-fopenmp-simd"]


def sources(folder, *patterns):
    found = []
    for pattern in patterns:
        found += glob.glob(os.path.join("kernels", folder, pattern))
    return sorted(found)


def gpu_backend():
    """The GPU backend this torch can build, with its sources and compiler flags, or None."""
    if os.environ.get("FLASH_MLA_GPU", "1") == "0":
        return None
    if torch.version.hip:
        arch = os.environ.get("FLASH_MLA_ROCM_ARCH", "gfx942")
        return "gfx942", sources("gfx942", "*.hip", "*.cpp"), [f"--offload-arch={arch}", "-O3", "-std=c++17"]
    if torch.version.cuda:
        flags = ["-O3", "-std=c++17", "-gencode=arch=compute_90a,code=sm_90a", "--use_fast_math", "-lineinfo"]
        return "sm90", sources("sm90", "*.cu"), flags
    return None


def extension():
    cpu_sources = ["kernels/registration.cpp"] + sources("ops", "*.cpp") + sources("cpu", "*.cpp")
    backend = gpu_backend()
    if backend is None or not backend[1]:
        print("flash_mla_rocm: building the CPU kernels" + ("" if backend is None else f" ({backend[0]} has no sources)"))
        return CppExtension("flash_mla_rocm._C", cpu_sources, extra_compile_args={"cxx": CXX_FLAGS})
    name, gpu_sources, gpu_flags = backend
    print(f"flash_mla_rocm: building the CPU kernels and the {name} kernels ({len(gpu_sources)} sources)")
    macro = ["-DFLASH_MLA_WITH_GPU", f"-DFLASH_MLA_WITH_{name.upper()}"]
    return CUDAExtension(
        "flash_mla_rocm._C",
        cpu_sources + gpu_sources,
        extra_compile_args={"cxx": CXX_FLAGS + macro, "nvcc": gpu_flags + macro},
    )


setup(
    name="flash_mla_rocm",
    version="0.1.0",
    description="MLA decode attention over DeepSeek's MODEL1 FP8 KV cache, as PyTorch custom ops",
    packages=find_packages(include=["flash_mla_rocm"]),
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension},
    python_requires=">=3.9",
    install_requires=["torch"],
)
