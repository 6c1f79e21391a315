"""python -m flash_mla_rocm: what a bug report needs (the build, the running torch, each device's backend)."""

from . import info

print(info())
