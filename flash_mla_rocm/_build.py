"""What this installation was built for, the import-time check that the running torch can load it, and info()."""

import torch

try:
    from ._build_info import BUILD
except ImportError:  # a source tree: setup.py has not built it here
    BUILD = None

NOT_BUILT = (
    "flash_mla_rocm's extension (_C) is not built here. Install the package (pip install --no-build-isolation .) "
    "and import it from outside the source tree, or build it in place (python setup.py build_ext --inplace)."
)


def _toolchain_of_torch(cuda, hip):
    """What a torch build provides, in the terms of a wheel's local tag: cu130, rocm6.4 or cpu."""
    if cuda:
        return "cu" + cuda.replace(".", "")
    if hip:
        return "rocm" + ".".join(hip.split(".")[:2])
    return "cpu"


def mismatch(build, torch_version, cuda, hip):
    """Why this build cannot run with the given torch (its version string, CUDA and HIP versions), or None.

    The extension's C++ ABI is that of one torch minor release; GPU kernels also need the toolchain they were built
    with (a CPU-only build runs with any toolchain of its release)."""
    release = ".".join(torch_version.split("+")[0].split(".")[:2])
    running = _toolchain_of_torch(cuda, hip)
    if release == build["torch"] and build["toolchain"] in ("cpu", running):
        return None
    return (
        f"flash_mla_rocm {build['version']} was built for torch {build['torch']} ({build['toolchain']}), but this "
        f"Python has torch {torch_version} ({running}): its compiled extension cannot be loaded with it. Install a "
        f"flash_mla_rocm wheel built for torch {release} ({running}), named flash_mla_rocm-*+{running}.torch{release}-*"
        f".whl, or build one against this torch: pip install --no-build-isolation <source>."
    )


def check_torch():
    """Raises ImportError with the reason when this build cannot run with the installed torch."""
    if BUILD is None:
        raise ImportError(NOT_BUILT)
    reason = mismatch(BUILD, torch.__version__, torch.version.cuda, torch.version.hip)
    if reason is not None:
        raise ImportError(reason)


def info():
    """What a bug report needs: this package's build, the running torch, and the backend each device would use."""
    lines = [
        f"flash_mla_rocm {BUILD['version']}",
        f"  built for torch {BUILD['torch']} ({BUILD['toolchain']}; built with torch {BUILD['torch_built_with']}"
        + (f", CUDA {BUILD['cuda']}" if BUILD["cuda"] else "")
        + (f", HIP {BUILD['hip']}" if BUILD["hip"] else "")
        + ")",
        "  backends compiled in:",
    ]
    lines += [f"    {b['name']}: {' '.join(b['flags'])}" for b in BUILD["backends"]]
    lines.append(
        f"running with torch {torch.__version__}"
        + (f", CUDA {torch.version.cuda}" if torch.version.cuda else "")
        + (f", HIP {torch.version.hip}" if torch.version.hip else "")
    )
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices += [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    lines.append("devices:")
    for device in devices:
        name = "cpu" if device.type == "cpu" else torch.cuda.get_device_name(device)
        lines.append(f"  {device} ({name}): backend {torch.ops.flash_mla._backend_name(device)}")
    return "\n".join(lines)
