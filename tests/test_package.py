"""The installed package: its version and build description, the import-time torch check, python -m
flash_mla_rocm, and the backend each device's tensors go to."""

import importlib.metadata
import subprocess
import sys

import torch

import flash_mla_rocm as fm
from flash_mla_rocm import _build

CUDA_BUILD = {"version": "0.1.0+cu130.torch2.11", "toolchain": "cu130", "torch": "2.11"}
CPU_BUILD = {"version": "0.1.0+cpu.torch2.13", "toolchain": "cpu", "torch": "2.13"}


def test_version_names_the_build():
    assert fm.__version__ == _build.BUILD["version"].split("+")[0]
    assert importlib.metadata.version("flash_mla_rocm") in (_build.BUILD["version"], fm.__version__)  # sdist: plain
    assert _build.BUILD["version"].endswith(f"+{_build.BUILD['toolchain']}.torch{_build.BUILD['torch']}")
    requires = importlib.metadata.requires("flash_mla_rocm")
    assert f"torch=={_build.BUILD['torch']}.*" in requires


def test_the_running_torch_passes_the_check():
    assert _build.mismatch(_build.BUILD, torch.__version__, torch.version.cuda, torch.version.hip) is None


def test_another_torch_release_is_refused_with_the_reason():
    reason = _build.mismatch(CUDA_BUILD, "2.13.0+cu130", "13.0", None)
    assert "built for torch 2.11 (cu130)" in reason and "has torch 2.13.0+cu130 (cu130)" in reason
    assert "flash_mla_rocm-*+cu130.torch2.13-*.whl" in reason and "pip install --no-build-isolation" in reason


def test_another_toolchain_is_refused_and_a_cpu_build_runs_with_any():
    assert "(cpu)" in _build.mismatch(CUDA_BUILD, "2.11.0+cpu", None, None)
    assert "(rocm6.4)" in _build.mismatch(CUDA_BUILD, "2.11.0+rocm6.4", None, "6.4.43482")
    assert _build.mismatch(CUDA_BUILD, "2.11.1+cu130", "13.0", None) is None  # a patch release: the same ABI
    assert _build.mismatch(CPU_BUILD, "2.13.0+cu130", "13.0", None) is None


def test_python_m_prints_what_a_bug_report_needs():
    printed = subprocess.run([sys.executable, "-m", "flash_mla_rocm"], capture_output=True, text=True, check=True,
                             cwd="/").stdout  # fmt: skip
    assert printed.startswith(f"flash_mla_rocm {_build.BUILD['version']}\n")
    assert f"built for torch {_build.BUILD['torch']}" in printed
    assert f"running with torch {torch.__version__}" in printed
    assert "cpu (cpu): backend cpu" in printed


def test_backend_of_each_device():
    assert torch.ops.flash_mla._backend_name(torch.device("cpu")) == "cpu"
    assert torch.ops.flash_mla._backend_name(torch.device("meta")) == "none"
    for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        assert torch.ops.flash_mla._backend_name(torch.device("cuda", i)) != "none"
