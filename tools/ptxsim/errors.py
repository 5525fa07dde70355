"""The interpreter's errors: every check failure names the kernel, the PTX line, the CTA, the thread and the
address, the way compute-sanitizer reports on a GPU."""

from __future__ import annotations

from typing import Optional, Tuple


class SimError(Exception):
    """Base of every error the interpreter raises."""


class PtxParseError(SimError):
    """The PTX text could not be parsed (line given)."""


class UnsupportedInstruction(SimError):
    """An instruction (or a form of it) the interpreter does not implement: raised when the kernel is loaded,
    never skipped."""


class LaunchError(SimError):
    """A launch the interpreter refuses (bad grid/block, parameter block that does not match the entry)."""


class CheckError(SimError):
    """A sanitizer-style finding. ``tool`` is memcheck, initcheck, racecheck or synccheck."""

    tool = "check"

    def __init__(self, what: str, *, kernel: str = "?", line: int = 0, text: str = "",
                 cta: Optional[Tuple[int, int, int]] = None, thread: Optional[Tuple[int, int, int]] = None,
                 address: Optional[int] = None):
        self.what, self.kernel, self.line, self.text = what, kernel, line, text
        self.cta, self.thread, self.address = cta, thread, address
        where = f"{kernel} line {line} ({text})"
        who = f"CTA {cta} thread {thread}" if cta is not None else "no thread"
        at = f" at address 0x{address:x}" if address is not None else ""
        super().__init__(f"{self.tool}: {where}: {who}: {what}{at}")


class MemcheckError(CheckError):
    tool = "memcheck"


class InitcheckError(CheckError):
    tool = "initcheck"


class RacecheckError(CheckError):
    tool = "racecheck"


class SynccheckError(CheckError):
    tool = "synccheck"


class TrapError(CheckError):
    """The kernel executed trap (e.g. the compute_75 body of an sm_80-only kernel)."""

    tool = "trap"


class HangError(CheckError):
    """The step limit was reached (a spin wait that cannot finish under lockstep scheduling, or a runaway loop)."""

    tool = "hang"
