"""The child side of the isolated tactic selection (runtime/tactic_isolation.py has the protocol).

``python -m lfdn_edge.runtime.tactic_worker REQUEST.json`` builds its own engine from the engine file, selects
every slot with the crash journal and writes the choices and records (or, when a candidate's CUDA error ended
the selection, that candidate and its error) to the result file named in the request.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .tactic_isolation import STATUS_CUDA_ERROR_EXIT


def run_request(request_path: str) -> int:
    req = json.loads(Path(request_path).read_text())
    from ..artifact.file import read_engine
    from ..artifact.native_layout import unpack_spec
    from ..native_core import load_native

    C = load_native()
    art = read_engine(req["engine"])
    spec = unpack_spec(art.header.get("native"), art.payload, req["engine"])
    result_path = Path(req["result"])

    def write(obj) -> None:
        tmp = result_path.with_name(result_path.name + ".tmp")
        tmp.write_text(json.dumps(obj))
        os.replace(tmp, result_path)

    device = req["device"]
    if device == "cpu":
        from .tactic_cache import select_cpu_tactics

        threads = req.get("threads")
        engine = C.CpuEngine(spec, req["max_batch"], 0 if threads is None else int(threads))
        choices, records, _ = select_cpu_tactics(engine, test_only=req["test_only"], exclude=req["exclude"],
                                                 journal=req["journal"], progress=False)
    else:
        from .cuda_tactics import select_cuda_tactics

        index = int(device.split(":", 1)[1]) if ":" in device else 0
        engine = C.CudaEngine(spec, req["max_batch"], index)
        try:
            choices, records, _ = select_cuda_tactics(engine, test_only=req["test_only"], iters=req["iters"],
                                                      exclude=req["exclude"], journal=req["journal"],
                                                      progress=False)
        except RuntimeError as exc:  # a candidate's CUDA error (the binding names it): the context may be lost
            msg = str(exc)
            marker = "candidate "
            if marker in msg:
                name = msg.split(marker, 1)[1].split(" ", 1)[0]
                write({"fatal": {"name": name, "error": msg}})
                return STATUS_CUDA_ERROR_EXIT
            raise
    write({"choices": choices, "records": records})
    return 0


if __name__ == "__main__":
    sys.exit(run_request(sys.argv[1]))
