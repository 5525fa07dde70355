"""ptxsim: an interpreter for the PTX that nvcc emits for this project's kernels, with compute-sanitizer
style checks (memcheck, initcheck, racecheck, synccheck). Test infrastructure: it runs every CUDA kernel of
lfdn-edge on a machine without a GPU. See docs/PTX_INTERPRETER.md."""

from .device import Device
from .errors import (CheckError, HangError, InitcheckError, LaunchError, MemcheckError, PtxParseError, RacecheckError,
                     SimError, SynccheckError, TrapError, UnsupportedInstruction)
from .parser import parse

__all__ = ["Device", "parse", "SimError", "CheckError", "MemcheckError", "InitcheckError", "RacecheckError",
           "SynccheckError", "TrapError", "HangError", "LaunchError", "PtxParseError", "UnsupportedInstruction"]
