"""The build side: turn a checkpoint into an engine artifact (ONNX export, native payload, TensorRT plan).

:func:`build_engine` writes one file; :func:`build_artifact` builds it in memory. Imports the method layer
and :mod:`lfdn_edge.artifact`; never the run side (:mod:`lfdn_edge.runtime`).

Named ``builder``, not ``build``: black (and ruff before 0.3) skip every folder named ``build`` by default
(formerly ``lfdn_edge.build``; no alias is kept: import from here or from ``lfdn_edge``).
"""

from .dispatch import BUILD_BACKENDS, build_artifact, build_engine, choose_backend, describe

__all__ = ["BUILD_BACKENDS", "build_artifact", "build_engine", "choose_backend", "describe"]
