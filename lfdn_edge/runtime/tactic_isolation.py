"""First-time tactic selection in a child process, so that one faulting candidate cannot sink the caller.

Tactic selection runs every candidate kernel. On a GPU an illegal address or a ``__trap`` in one candidate
destroys the CUDA context: every later CUDA call of the process fails, the engine with it, and so would the
user's robot process or a pytest session. So the first selection of an engine runs here, in a child process
(``python -m lfdn_edge.runtime.tactic_worker REQUEST``) that builds its own engine from the engine file:

* the child selects every (layer, batch bucket) slot with a journal (one JSON line per candidate event,
  written with one ``write`` before the candidate runs and after its result, lfdn/tactic_select.h), and writes
  the choices and every candidate's record to a result file;
* a candidate that returns a CUDA error ends the child's selection (the context may be lost, nothing after it
  could be trusted): the result names it with its CUDA error;
* a candidate that kills the child (a signal, an abort) is named by the journal: the last "start" without its
  "done";
* the parent records that candidate as rejected (with the error, or the signal and the end of the child's
  stderr), and starts a new child with it excluded, until a child completes. The excluded candidate is
  excluded for every slot (a fault at one shape says the kernel is not trustworthy here).

The parent never runs a rejected candidate. It then applies the child's choices to its own engine with
``set_tactic``, which verifies each one again on the parent's device (one run of a candidate that has just run
cleanly in the child), and writes the tactic cache as before (runtime/cuda_tactics.py, tactic_cache.py).

Tested on the CPU (tests/test_tactic_isolation.py) with the test-only CPU tactic ``cpu.test.crash``, which
aborts its process: the same machinery, engine kind "cpu". On a GPU it has not run yet (no GPU was lent).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("lfdn_edge.tactics")

STATUS_CUDA_ERROR_EXIT = 3  # the child's exit code when a candidate's CUDA error stopped its selection
STDERR_TAIL = 2000


class TacticIsolationError(RuntimeError):
    """The isolated selection could not complete (the child failed before any candidate ran, or kept failing)."""


@dataclass
class IsolatedSelection:
    choices: dict                       # {slot: tactic name}
    records: dict                       # {slot: [candidate records]} of the completing child
    rejected: list = field(default_factory=list)  # [{"name", "slot", "why", "attempt"}]: candidates that faulted
    attempts: int = 0
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------- journal
def read_journal(path: Path) -> list[dict]:
    """The journal's events; a last line cut by the crash is ignored."""
    events = []
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return events
    for line in text.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def culprit_from_journal(events: list[dict]) -> dict | None:
    """The candidate that was running when the process died: the last "start" with no "done" after it."""
    open_ = None
    for e in events:
        if e.get("event") == "start":
            open_ = e
        elif e.get("event") == "done" and open_ is not None and e.get("name") == open_.get("name"):
            open_ = None
    return open_


def _describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit status {rc}"


# ------------------------------------------------------------------------------------------- parent
def select_isolated(engine_file, *, device: str, max_batch: int, threads: int | None = None, test_only=(),
                    iters: int = 20, max_attempts: int | None = None, timeout_s: float | None = None,
                    workdir=None) -> IsolatedSelection:
    """Select every slot of the engine in ``engine_file`` on ``device`` ("cpu", "cuda", "cuda:N") in child
    processes, excluding each candidate that faulted, until one child completes."""
    t0 = time.perf_counter()
    engine_file = str(Path(engine_file).resolve())
    rejected: list[dict] = []
    excluded: list[str] = []
    with tempfile.TemporaryDirectory(prefix="lfdn-tactics-", dir=workdir) as tmp:
        tmp = Path(tmp)
        limit = max_attempts if max_attempts is not None else 32
        for attempt in range(1, limit + 1):
            journal, result = tmp / f"journal-{attempt}.jsonl", tmp / f"result-{attempt}.json"
            request = {"engine": engine_file, "device": device, "max_batch": int(max_batch), "threads": threads,
                       "test_only": list(test_only), "exclude": list(excluded), "iters": int(iters),
                       "journal": str(journal), "result": str(result)}
            req_path = tmp / f"request-{attempt}.json"
            req_path.write_text(json.dumps(request))
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2])] +
                                                ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
            try:
                proc = subprocess.run([sys.executable, "-m", "lfdn_edge.runtime.tactic_worker", str(req_path)],
                                      capture_output=True, text=True, timeout=timeout_s, env=env)
                rc, err = proc.returncode, proc.stderr
            except subprocess.TimeoutExpired as exc:
                rc, err = -int(signal.SIGKILL), f"timed out after {timeout_s} s\n{exc.stderr or ''}"
            res = None
            if result.exists():
                try:
                    res = json.loads(result.read_text())
                except ValueError:
                    res = None
            if rc == 0 and res is not None and "choices" in res:
                return IsolatedSelection(res["choices"], res["records"], rejected, attempt, time.perf_counter() - t0)
            tail = (err or "")[-STDERR_TAIL:].strip()
            if res is not None and res.get("fatal"):  # a candidate's CUDA error ended the child's selection
                name, why = res["fatal"]["name"], res["fatal"]["error"]
                slot = res["fatal"].get("slot")
            else:
                open_ = culprit_from_journal(read_journal(journal))
                if open_ is None:
                    raise TacticIsolationError(f"the tactic selection process failed ({_describe_exit(rc)}) with "
                                               f"no candidate running; its stderr ends with:\n{tail}")
                name, slot = open_["name"], f"b{open_.get('bucket')}.{open_.get('key')}"
                why = f"the selection process died while running it ({_describe_exit(rc)})" + (
                    f"; stderr: {tail.splitlines()[-1]}" if tail else "")
            if name in excluded:
                raise TacticIsolationError(f"candidate {name} faulted again although excluded: {why}")
            excluded.append(name)
            rejected.append({"name": name, "slot": slot, "why": why, "attempt": attempt})
            log.warning("tactic %s rejected (%s): %s; selecting again without it", name, slot, why)
        raise TacticIsolationError(f"no isolated selection completed in {limit} attempts; rejected: "
                                   f"{[r['name'] for r in rejected]}")
