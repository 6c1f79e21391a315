# The package version, in one place: setup.py reads it (adding the build's local tag to wheels), the package
# exports it as flash_mla_rocm.__version__.
__version__ = "0.1.0"
