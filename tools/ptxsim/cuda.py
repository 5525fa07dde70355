"""CUDA C++ -> PTX with the system nvcc (cached by content), and demangling of entry names."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

CACHE = Path(os.environ.get("LFDN_EDGE_PTX_CACHE", Path.home() / ".cache" / "lfdn-edge" / "ptx"))


def nvcc_path() -> str:
    for cand in (shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if cand and Path(cand).exists():
            return cand
    raise FileNotFoundError("nvcc not found (needed to compile CUDA sources to PTX)")


def compile_to_ptx(source: Path, arch: str = "compute_80", include: Sequence[Path] = (), defines: Sequence[str] = (),
                   extra: Sequence[str] = ()) -> str:
    """PTX text of a .cu file for a virtual architecture; the result is cached on the source text, the
    headers under `include` and the options."""
    source = Path(source)
    h = hashlib.sha256()
    h.update(source.read_bytes())
    for inc in include:
        for p in sorted(Path(inc).rglob("*")):
            if p.suffix in (".h", ".cuh", ".hpp", ".inl") and p.is_file():
                h.update(str(p).encode())
                h.update(p.read_bytes())
    opts = [f"-arch={arch}", "-std=c++17", *[f"-I{p}" for p in include], *[f"-D{d}" for d in defines], *extra]
    h.update(" ".join(opts).encode())
    nv = nvcc_path()
    h.update(nv.encode())
    out = CACHE / f"{source.stem}-{arch}-{h.hexdigest()[:16]}.ptx"
    if out.exists():
        return out.read_text(encoding="utf-8")
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    r = subprocess.run([nv, "-ptx", *opts, str(source), "-o", str(tmp)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"nvcc failed on {source}:\n{r.stderr}")
    os.replace(tmp, out)
    return out.read_text(encoding="utf-8")


@functools.lru_cache(maxsize=None)
def demangle(name: str) -> str:
    tool = shutil.which("c++filt") or shutil.which("cu++filt")
    if not tool:
        return name
    r = subprocess.run([tool, name], capture_output=True, text=True)
    return r.stdout.strip() or name
