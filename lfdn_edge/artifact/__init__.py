"""Engine artifacts, the format shared by the build side and the run side.

One file = JSON header + backend payload (:mod:`.file`); the header entries every engine carries
(:mod:`.header`); the byte layout of the native payload (:mod:`.native_layout`). Nothing here builds or runs
an engine: :mod:`lfdn_edge.builder` writes artifacts, :mod:`lfdn_edge.runtime` reads and runs them.
"""

from .file import ENGINE_FORMAT_VERSION, EngineArtifact, EngineError, read_engine, write_engine

__all__ = ["ENGINE_FORMAT_VERSION", "EngineArtifact", "EngineError", "read_engine", "write_engine"]
