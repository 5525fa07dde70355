"""The CPU engine's weights are advised as transparent huge pages (csrc/engine/engine_spec.cpp,
aligned_alloc_bytes: buffers of 4 MiB and more are 2 MiB aligned and madvise(MADV_HUGEPAGE)d before the
weights are packed into them), checked in a fresh Python process.

Why a fresh process: the process-wide AnonHugePages counter of a long pytest process cannot show it (the engine's
buffer may reuse memory already counted; an earlier test was dropped for that). Here a child process that has
done nothing else builds one engine and reads /proc/self/smaps: the mapping that holds the weights must carry the
advice (VmFlags ``hg``), be THP-eligible (``THPeligible: 1``) and be backed by huge pages (``AnonHugePages``) once
the weights are written. With THP in "madvise" mode (this machine and CI) the advice is what gives the weights
huge pages; without the madvise the mapping has no ``hg`` flag and no huge pages.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lfdn_edge._C", reason="native module not built")

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")

CHILD = r"""
import json
import numpy as np
from lfdn_edge import _C


def mappings():
    out, cur = [], None
    for line in open("/proc/self/smaps"):
        head = line.split()
        if "-" in head[0] and not head[0].endswith(":"):  # "start-end perms offset dev inode [path]"
            a, b = (int(v, 16) for v in head[0].split("-"))
            cur = {"start": a, "end": b, "path": head[5] if len(head) > 5 else "", "flags": [], "fields": {}}
            out.append(cur)
        elif head[0] == "VmFlags:":
            cur["flags"] = head[1:]
        elif head[0].endswith(":") and len(head) >= 2 and head[1].isdigit():
            cur["fields"][head[0][:-1]] = int(head[1])
    return out


C, W, D = 512, 1024, 2  # FP32 weights: (512*1024 * 2 + 1024*1024 * 2 * 2) * 4 bytes = 20 MiB, ten 2 MiB pages
rng = np.random.default_rng(0)
f = lambda *s: (0.01 * rng.standard_normal(s)).astype(np.float32)
spec = {"in_dim": C, "width": W, "depth": D, "steps": 1, "precision": "fp32",
        "inp_w": f(W, C), "inp_b": f(W), "fc1_w": [f(W, W) for _ in range(D)], "fc2_w": [f(W, W) for _ in range(D)],
        "gn1_g": [np.ones(W, np.float32)] * D, "gn1_b": [f(W) for _ in range(D)],
        "gn2_g": [np.ones(W, np.float32)] * D, "gn2_b": [f(W) for _ in range(D)], "fc2_b": [f(W) for _ in range(D)],
        "fc1_bias": f(1, D, W), "out_g": np.ones(W, np.float32), "out_b": f(W), "out_w": f(C, W), "out_bias": f(C),
        "gn_eps": 1e-5, "cos_eps": 1e-8, "q_a": 1.0, "q_b": 0.0, "seed": 0, "stage_offsets": [0, 256, C]}
before = {(m["start"], m["end"]) for m in mappings()}
eng = _C.CpuEngine(spec, 1)  # max_batch 1: the workspace stays far below the 4 MiB of a huge-page buffer
eng.score(np.zeros((1, C), np.float32))
new = [m for m in mappings() if (m["start"], m["end"]) not in before]
print(json.dumps({"weight_bytes": eng.weight_bytes, "new": new}))
"""


def _thp_mode() -> str:
    text = THP.read_text() if THP.exists() else ""
    return text[text.index("[") + 1:text.index("]")] if "[" in text else ""


def _process_thp_disabled() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("THP_enabled:"):
            return line.split()[1] == "0"
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise(MADV_HUGEPAGE) and smaps are Linux's")
def test_engine_weights_are_advised_and_backed_by_huge_pages_in_a_fresh_process():
    mode = _thp_mode()
    if not mode:
        pytest.skip(f"{THP} not found: this kernel has no transparent huge pages")
    if mode == "never":
        pytest.skip(f"{THP} is 'never': transparent huge pages are off, the advice cannot take effect")
    if _process_thp_disabled():
        pytest.skip("THP is disabled for this process tree (prctl PR_SET_THP_DISABLE; /proc/self/status "
                    "THP_enabled: 0)")
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    wb = got["weight_bytes"]
    assert wb >= 16 << 20, wb  # several 2 MiB pages
    # the mapping that holds the weights: a new anonymous mapping of at least weight_bytes (glibc serves a
    # 2 MiB-aligned posix_memalign of this size from its own mmap; the madvised part becomes its own mapping)
    big = [m for m in got["new"] if m["end"] - m["start"] >= wb and not m["path"]]
    assert big, json.dumps(got["new"], indent=1)[:4000]
    advised = [m for m in big if "hg" in m["flags"]]
    assert advised, ("no mapping of the weights carries MADV_HUGEPAGE (VmFlags hg): "
                     + json.dumps([(m["end"] - m["start"], m["flags"]) for m in big]))
    m = max(advised, key=lambda m: m["end"] - m["start"])
    size = m["end"] - m["start"]
    assert m["start"] % (2 << 20) == 0 and size % (2 << 20) == 0, (hex(m["start"]), size)  # whole huge pages
    assert m["fields"].get("THPeligible") == 1, m["fields"]
    huge = m["fields"].get("AnonHugePages", 0) * 1024
    # every 2 MiB page of the weights was written after the advice; allow the kernel to have refused a few
    assert huge >= 0.75 * wb, (f"AnonHugePages {huge} bytes of a {size}-byte weights mapping "
                               f"({wb} weight bytes; THP mode {mode!r})", m["fields"])
