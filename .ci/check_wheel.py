"""Checks a built wheel: what it holds (the extension and the Python package; no kernel sources, tests or the
test-only emulation) and what it says (a version tagged with its toolchain and torch, a torch pin that admits only
that release). Usage: python3 .ci/check_wheel.py dist/flash_mla_rocm-*.whl"""

import re
import sys
import zipfile


def main(path):
    names = zipfile.ZipFile(path).namelist()
    metadata = zipfile.ZipFile(path).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    version = re.search(r"^Version: (.+)$", metadata, re.M).group(1)
    requires = re.findall(r"^Requires-Dist: (.+)$", metadata, re.M)
    failures = []
    if not any(re.fullmatch(r"flash_mla_rocm/_C\..*\.so", n) for n in names):
        failures.append("no flash_mla_rocm/_C*.so")
    for required in ("flash_mla_rocm/__init__.py", "flash_mla_rocm/_build_info.py", "flash_mla_rocm/__main__.py"):
        if required not in names:
            failures.append(f"no {required}")
    stray = [n for n in names if not n.startswith("flash_mla_rocm")]
    if stray:
        failures.append(f"files outside the package: {stray[:5]}")
    if any("emulation" in n or n.endswith((".h", ".cu", ".cuh", ".hip", ".cpp")) for n in names):
        failures.append("kernel sources or the test-only emulation in the wheel")
    tag = re.fullmatch(r"[0-9.]+\+(cpu|cu[0-9]+|rocm[0-9.]+)\.torch([0-9]+\.[0-9]+)", version)
    if tag is None:
        failures.append(f"version {version} has no toolchain.torch local tag")
    elif f"torch=={tag.group(2)}.*" not in requires:
        failures.append(f"torch requirement {requires} does not pin torch {tag.group(2)}")
    if version not in path:
        failures.append(f"file name {path} does not carry the version {version}")
    print(f"{path.split('/')[-1]}: version {version}, requires {', '.join(requires)}, {len(names)} files")
    if failures:
        print("check_wheel: " + "; ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
