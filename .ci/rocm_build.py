"""The ROCm build of the wheel, as far as a machine without ROCm can take it.

Runs the repository's own setup.py (`build_ext --inplace`) in a copy of the tree, with torch's build machinery
(torch.utils.cpp_extension) set as it is under a ROCm torch: CUDAExtension then runs torch's hipify exactly as it
does there, and BuildExtension compiles the hipified sources with the flags it uses there. What ROCm itself would
provide is stood in for by the smallest pieces, in a scratch ROCM_HOME:

- bin/hipcc: Debian's clang-19 compiling HIP (-x hip), host and device, without ROCm's device libraries
  (-nogpulib: the kernels call builtins only);
- include/hip: Debian's HIP headers (libamdhip64-dev);
- lib/libamdhip64.so: Debian's HIP runtime; lib/libc10_hip.so and lib/libtorch_hip.so, which a ROCm torch has and a
  CPU torch lacks: empty libraries, so that the link line stays the one BuildExtension writes. The library built
  must need no symbol from them (checked below).

No ROCm-only torch header is stood in for: the sources include none.

Fails when hipify rewrites any file (the sources are written so that it has nothing to do: a rewritten header is
how a ROCm-only failure slips past every other check), when a compile or the link fails, when the library needs a
symbol that neither torch's CPU libraries, the HIP runtime, the C/C++ runtime nor Python define, when it carries no
gfx942 code object, or when setup.py accepts an --offload-arch the kernels are not correct for.

Usage: python3 .ci/rocm_build.py [--clang clang++-19]
"""

import argparse
import contextlib
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBAMDHIP64 = "/usr/lib/x86_64-linux-gnu/libamdhip64.so"
HIP_HEADERS = "/usr/include/hip"


def copy_tree(destination):
    """The files git tracks, and the untracked ones it does not ignore, as they are in the working tree."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.split("\0")  # fmt: skip
    for path in filter(None, listed):
        source = os.path.join(ROOT, path)
        if os.path.isfile(source):
            os.makedirs(os.path.dirname(os.path.join(destination, path)), exist_ok=True)
            shutil.copy2(source, os.path.join(destination, path))


def fake_rocm_home(home, clang):
    os.makedirs(os.path.join(home, "bin"))
    os.makedirs(os.path.join(home, "include"))
    os.makedirs(os.path.join(home, "lib"))
    hipcc = os.path.join(home, "bin", "hipcc")
    with open(hipcc, "w") as f:
        f.write(f'#!/bin/sh\nexec {clang} -x hip -nogpulib "$@"\n')
    os.chmod(hipcc, 0o755)
    os.symlink(HIP_HEADERS, os.path.join(home, "include", "hip"))
    os.symlink(LIBAMDHIP64, os.path.join(home, "lib", "libamdhip64.so"))
    empty = os.path.join(home, "empty.c")
    open(empty, "w").close()
    for name in ("c10_hip", "torch_hip"):
        subprocess.run(["cc", "-shared", "-o", os.path.join(home, "lib", f"lib{name}.so"), empty], check=True)


def as_rocm_torch(rocm_home):
    """torch and torch.utils.cpp_extension as they are under a ROCm torch."""
    import torch
    from torch.utils import cpp_extension

    torch.version.hip = "6.4.0"
    cpp_extension.ROCM_HOME = rocm_home
    cpp_extension.HIP_HOME = None
    cpp_extension.IS_HIP_EXTENSION = True
    cpp_extension.ROCM_VERSION = (6, 4)


def run_setup(tree, argv):
    """setup.py with argv, in tree: (its output, the error it ended with or None). The output is taken at the file
    descriptors, so that the compilers' output (ninja's subprocesses) is in it too."""
    os.chdir(tree)
    sys.argv = ["setup.py"] + argv
    error = None
    with tempfile.TemporaryFile(mode="w+") as log:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            runpy.run_path("setup.py", run_name="__main__")
        except SystemExit as exit:
            error = exit.code if exit.code not in (None, 0) else None
        except Exception as exception:  # noqa: BLE001 (reported with the build's output)
            error = f"{type(exception).__name__}: {exception}"
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        log.seek(0)
        return log.read(), error


def hipify_rewrites():
    """{source: hipified copy} for every file hipify rewrote during the build."""
    from torch.utils.hipify import hipify_python

    return {
        path: result.hipified_path
        for path, result in hipify_python.HIPIFY_FINAL_RESULT.items()
        if result.hipified_path not in (None, path)
    }


def unresolved_symbols(library, search_path):
    """Symbols the library needs that none of its libraries define (Python's C API, defined by the interpreter that
    loads it, left out)."""
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(search_path))
    report = subprocess.run(["ldd", "-r", library], env=env, capture_output=True, text=True)
    missing = re.findall(r"undefined symbol: (\S+)", report.stdout + report.stderr)
    not_found = re.findall(r"^\s*(\S+) => not found", report.stdout, re.M)
    return sorted(set(s for s in missing if not s.startswith(("Py", "_Py")))) + [f"library {n}" for n in not_found]


def code_objects(library, work):
    """The offload targets of the library's HIP fat binary."""
    fatbin = os.path.join(work, "fatbin")
    subprocess.run(["llvm-objcopy-19", f"--dump-section=.hip_fatbin={fatbin}", library, os.path.join(work, "so")],
                   check=True, capture_output=True)  # fmt: skip
    listed = subprocess.run(["clang-offload-bundler-19", "--list", "--type=o", f"--input={fatbin}"],
                            check=True, capture_output=True, text=True)  # fmt: skip
    return listed.stdout.split()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clang", default="clang++-19")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="rocm_build.")
    tree, rocm_home = os.path.join(work, "tree"), os.path.join(work, "rocm")
    copy_tree(tree)
    fake_rocm_home(rocm_home, shutil.which(args.clang) or args.clang)
    as_rocm_torch(rocm_home)
    failures = []

    with patched_environ({"FLASH_MLA_ROCM_ARCH": "gfx950"}):
        _, refusal = run_setup(tree, ["--name"])
    print(f"setup.py with FLASH_MLA_ROCM_ARCH=gfx950: {'refused: ' + str(refusal) if refusal else 'accepted'}")
    if refusal is None or "gfx950" not in str(refusal):
        failures.append("setup.py accepts FLASH_MLA_ROCM_ARCH=gfx950, whose fp8 converter reads another format")

    with patched_environ({"FLASH_MLA_ROCM_ARCH": None, "MAX_JOBS": "2"}):
        output, error = run_setup(tree, ["build_ext", "--inplace"])
    print("\n".join(line for line in output.splitlines() if line.startswith("flash_mla_rocm:")))
    rewrites = hipify_rewrites()
    for source, copy in sorted(rewrites.items()):
        diff = subprocess.run(["diff", source, copy], capture_output=True, text=True).stdout
        failures.append(f"hipify rewrote {os.path.relpath(source, tree)}:\n{diff}")
    print(f"hipify: {len(rewrites)} files rewritten (the sources and every header they include were read)")
    libraries = [os.path.join(tree, "flash_mla_rocm", f) for f in os.listdir(os.path.join(tree, "flash_mla_rocm"))
                 if f.startswith("_C") and f.endswith(".so")]  # fmt: skip
    if error is not None or not libraries:
        print(output[-30000:])
        failures.append(f"the build failed: {error or 'no flash_mla_rocm/_C*.so'}")
    import torch

    for library in libraries:
        search_path = [os.path.join(os.path.dirname(torch.__file__), "lib"), os.path.join(rocm_home, "lib")]
        missing = unresolved_symbols(library, search_path)
        print(f"{os.path.basename(library)}: {os.path.getsize(library)} bytes, {len(missing)} unresolved symbols")
        if missing:
            listed = "\n  ".join(missing)
            failures.append(f"symbols no CPU torch library, HIP runtime or C/C++ runtime defines:\n  {listed}")
        targets = code_objects(library, work)
        print(f"code objects: {' '.join(targets)}")
        if not any(t.endswith("gfx942") for t in targets):
            failures.append(f"no gfx942 code object in {os.path.basename(library)}: {targets}")

    if failures:
        print("\nFAILED:\n" + "\n".join(failures))
        return 1
    print("\nOK: hipify changes nothing; the hipified sources compile (host + device, gfx942) and link against "
          "libamdhip64; every symbol resolves; setup.py refuses other architectures")
    shutil.rmtree(work, ignore_errors=True)
    return 0


@contextlib.contextmanager
def patched_environ(values):
    """os.environ with values set (None: removed), restored afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


if __name__ == "__main__":
    sys.exit(main())
