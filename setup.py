"""Builds flash_mla_rocm: one extension, flash_mla_rocm._C, holding the flash_mla ops for the installed torch.

Every build has the CPU kernels. A ROCm torch adds the gfx942 HIP kernels (kernels/gfx942, --offload-arch from
FLASH_MLA_ROCM_ARCH, default gfx942); a CUDA torch adds the Hopper kernels (kernels/sm90, sm_90a). Set
FLASH_MLA_GPU=0 to build the CPU kernels alone under any torch.

The extension runs only with the torch it was compiled against, so a wheel says which: its version carries a local
tag naming the toolchain and torch (0.1.0+cu130.torch2.11, +rocm6.4.torch2.9, +cpu.torch2.13), it requires that
torch minor release, and flash_mla_rocm/_build_info.py (written here) lets the package check it at import.
Metadata is in pyproject.toml; this file adds what depends on the build.
"""

import glob
import os
import re
import sys

try:
    import torch
except ImportError:
    raise SystemExit(
        "flash_mla_rocm is built against the PyTorch installed in this Python, and there is none. Install torch "
        "first (a CPU, CUDA or ROCm build: https://pytorch.org/get-started/locally/), then run "
        "`pip install --no-build-isolation .` (without --no-build-isolation pip would build against a fresh torch "
        "of its own choosing)."
    ) from None
from setuptools import find_packages, setup
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
CXX_FLAGS = ["-O3", "-fopenmp-simd"]


def sources(folder, *patterns):
    found = []
    for pattern in patterns:
        found += glob.glob(os.path.join("kernels", folder, pattern))
    return sorted(found)


# The gfx942 kernels read fp8 through v_cvt_pk_f32_fp8, which decodes e4m3fnuz on these targets only (gfx950 and
# later decode OCP e4m3fn with the same instruction, which the kernels' arithmetic does not expect).
ROCM_ARCHS = ("gfx940", "gfx941", "gfx942")


def rocm_offload_archs(value):
    """--offload-arch flags for FLASH_MLA_ROCM_ARCH ("gfx942", or several separated by ; or , with optional target
    features such as gfx942:sramecc+:xnack-); exits with the reason when one is not a target the kernels are for."""
    archs = [a.strip() for a in re.split(r"[;,]", value) if a.strip()]
    if not archs:
        raise SystemExit("flash_mla_rocm: FLASH_MLA_ROCM_ARCH is empty; leave it unset for gfx942")
    for arch in archs:
        target = re.fullmatch(r"(gfx[0-9a-f]+)(?::(?:sramecc|xnack)[+-])*", arch)
        if target is None:
            raise SystemExit(f"flash_mla_rocm: FLASH_MLA_ROCM_ARCH={value!r}: {arch!r} is not a target such as gfx942 "
                             "or gfx942:sramecc+:xnack-")
        if target.group(1) not in ROCM_ARCHS:
            raise SystemExit(
                f"flash_mla_rocm: FLASH_MLA_ROCM_ARCH={value!r}: the gfx942 kernels read fp8 with v_cvt_pk_f32_fp8, "
                f"which decodes e4m3fnuz on {', '.join(ROCM_ARCHS)} only (gfx950 and later decode OCP e4m3fn); "
                f"{target.group(1)} is not one of them. Build for one of those, or set FLASH_MLA_GPU=0 for the CPU "
                "kernels alone."
            )
    return [f"--offload-arch={arch}" for arch in archs]


def gpu_backends():
    """[(name, sources, compiler flags)] of the GPU backends this torch's toolchain builds: every one of them goes into
    the extension, and the binding layer picks one per device at run time (kernels/ops/backends.cpp). The sources of
    one toolchain are compiled with all of its backends' flags together."""
    if os.environ.get("FLASH_MLA_GPU", "1") == "0":
        return []
    if torch.version.hip:
        archs = rocm_offload_archs(os.environ.get("FLASH_MLA_ROCM_ARCH", "gfx942"))
        return [("gfx942", sources("gfx942", "*.hip"), archs)]
    if torch.version.cuda:
        return [("sm90", sources("sm90", "*.cu"), ["-gencode=arch=compute_90a,code=sm_90a", "--use_fast_math", "-lineinfo"])]
    return []


def extension(backends):
    cpu_sources = ["kernels/registration.cpp"] + sources("ops", "*.cpp") + sources("cpu", "*.cpp")
    if not backends:
        print("flash_mla_rocm: building the CPU kernels")
        return CppExtension("flash_mla_rocm._C", cpu_sources, extra_compile_args={"cxx": CXX_FLAGS})
    names = " and ".join(name for name, _, _ in backends)
    gpu_sources = [source for _, files, _ in backends for source in files]
    print(f"flash_mla_rocm: building the CPU kernels and the {names} kernels ({len(gpu_sources)} sources)")
    macros = ["-DFLASH_MLA_WITH_GPU"] + [f"-DFLASH_MLA_WITH_{name.upper()}" for name, _, _ in backends]
    gpu_flags = ["-O3", "-std=c++17"] + [flag for _, _, flags in backends for flag in flags]
    return CUDAExtension(
        "flash_mla_rocm._C",
        cpu_sources + gpu_sources,
        extra_compile_args={"cxx": CXX_FLAGS + macros, "nvcc": gpu_flags + macros},
    )


def base_version():
    text = open(os.path.join(ROOT, "flash_mla_rocm", "_version.py")).read()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


def torch_release():
    """torch's major.minor: the releases whose C++ ABI an extension built here can load with."""
    return ".".join(torch.__version__.split("+")[0].split(".")[:2])


def toolchain(backends):
    """The accelerator toolchain the extension was built for: cu130, rocm6.4, or cpu (no GPU kernels)."""
    if backends and torch.version.cuda:
        return "cu" + torch.version.cuda.replace(".", "")
    if backends and torch.version.hip:
        return "rocm" + ".".join(torch.version.hip.split(".")[:2])
    return "cpu"


def package_version(local_tag):
    """The base version, with the local tag in wheels. An sdist (and a build from one: it holds PKG-INFO) keeps the
    plain version, since pip requires a build to keep its sdist's version and an sdist is built anywhere."""
    from_sdist = "sdist" in sys.argv[1:] or os.path.exists(os.path.join(ROOT, "PKG-INFO"))
    return base_version() if from_sdist else f"{base_version()}+{local_tag}"


def write_build_info(backends, local_tag):
    """flash_mla_rocm/_build_info.py: what this build is, for the import-time check and flash_mla_rocm.info()."""
    info = {
        "version": f"{base_version()}+{local_tag}",
        "toolchain": toolchain(backends),
        "torch": torch_release(),
        "torch_built_with": torch.__version__,
        "cuda": torch.version.cuda if backends else None,
        "hip": torch.version.hip if backends else None,
        "backends": [{"name": "cpu", "flags": CXX_FLAGS}] + [{"name": n, "flags": f} for n, _, f in backends],
    }
    with open(os.path.join(ROOT, "flash_mla_rocm", "_build_info.py"), "w") as f:
        f.write("# Written by setup.py for this build (not in git).\nBUILD = " + repr(info) + "\n")


BACKENDS = [b for b in gpu_backends() if b[1]]
LOCAL_TAG = f"{toolchain(BACKENDS)}.torch{torch_release()}"
write_build_info(BACKENDS, LOCAL_TAG)

setup(
    version=package_version(LOCAL_TAG),
    install_requires=[f"torch=={torch_release()}.*"],
    packages=find_packages(include=["flash_mla_rocm"]),
    ext_modules=[extension(BACKENDS)],
    cmdclass={"build_ext": BuildExtension},
)
