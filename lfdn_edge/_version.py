"""The single version source of lfdn-edge (read by pyproject.toml through scikit-build-core)."""

__version__ = "0.1.0"
