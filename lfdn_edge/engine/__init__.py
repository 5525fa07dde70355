"""Engine artifacts: one file = JSON header + backend payload (see :mod:`lfdn_edge.engine.artifact`)."""

from .artifact import ENGINE_FORMAT_VERSION, EngineArtifact, EngineError, read_engine, write_engine

__all__ = ["ENGINE_FORMAT_VERSION", "EngineArtifact", "EngineError", "read_engine", "write_engine"]
