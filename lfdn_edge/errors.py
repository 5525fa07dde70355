"""Errors that carry a message for the user, as opposed to bugs (a leaf module).

The command-line tools print these as one line, ``error: ...``, and exit with status 2; anything else
(a KeyError or RuntimeError from a bug) keeps its traceback. Bad input is a ValueError (EngineError and
CheckpointError are ValueErrors), a missing file an OSError, a missing optional package an ImportError.
"""

from __future__ import annotations


class LfdnEdgeError(Exception):
    """Base of lfdn-edge's user-facing errors that are not ValueError/OSError/ImportError."""


class UnavailableError(LfdnEdgeError, RuntimeError):
    """What was asked cannot run on this machine: no GPU, a CPU build of torch, a backend without its package."""


class DeviceError(LfdnEdgeError, RuntimeError):
    """The device (CUDA runtime, TensorRT) reported a failure while building or running an engine."""


class TrainingDiverged(LfdnEdgeError, FloatingPointError):
    """Training produced a non-finite loss; the message says which epoch and what to change."""


USER_ERRORS = (ValueError, OSError, ImportError, LfdnEdgeError)
