"""Which PTX instructions of the project's kernels the PTX interpreter executes: runs the interpreter's kernel
tests (tests/test_ptxsim_kernels.py, tests/test_ptxsim_toolchains.py and the INT8 kernels'
tests/test_cuda_int8_ptxsim.py, without its mutants) with coverage recording and prints,
per PTX source (nvcc 13 or the NVRTC of CUDA 11.8 / 12.2), architecture and kernel, the static instructions
and how many ran, the opcodes never executed; the JSON goes to --out.

    python tools/ptx_coverage.py --out benchmarks/results/ptx-coverage.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="write the per-kernel coverage JSON here")
    ap.add_argument("--lines", action="store_true", help="keep the PTX line numbers never executed in the JSON")
    ap.add_argument("--tests", nargs="*", default=["tests/test_ptxsim_kernels.py", "tests/test_ptxsim_toolchains.py",
                                                   "tests/test_cuda_int8_ptxsim.py"])
    # the INT8 file's mutant tests run mutated PTX (labelled "mutant ..."): not the project's kernels' coverage
    ap.add_argument("-k", dest="keyword", default="not mutant", help="pytest -k expression (default: %(default)s)")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cov.json"
        env = dict(os.environ, LFDN_EDGE_PTX_COVERAGE=str(path))
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", a.keyword, *a.tests],
                           cwd=ROOT, env=env)
        if r.returncode != 0:
            print("the tests failed: coverage below is of a failed run", file=sys.stderr)
        rows = json.loads(path.read_text(encoding="utf-8"))
    by_src = defaultdict(lambda: [0, 0, 0, set(), set()])
    for row in rows:
        s = by_src[(row["ptx"], row["arch"])]
        s[0] += row["instructions"]
        s[1] += row["executed"]
        s[2] += 1
        s[3] |= set(row["opcodes_not_executed"])
        s[4] |= set(row["opcodes_executed"])
        print(f"{row['ptx']:>10} {row['arch']:>10} {row['kernel'][:70]:<70} {row['executed']:>5}/{row['instructions']:<5}"
              f" {row['thread_instructions']:>12,} thread-instructions")
    for (src, arch), (n, e, k, not_here, ran) in sorted(by_src.items()):
        never = not_here - ran  # in no kernel of this PTX
        print(f"{src} {arch}: {k} kernels, {e} of {n} static PTX instructions executed ({100.0 * e / max(n, 1):.1f}%);"
              f" opcodes never executed: {', '.join(sorted(never)) or 'none'}")
    if a.out:
        if not a.lines:
            for row in rows:
                row.pop("lines_not_executed", None)
        import platform
        meta = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                "command": "python tools/ptx_coverage.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                "kernels": rows}
        Path(a.out).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
