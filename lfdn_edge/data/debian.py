"""Fetch Debian packages and unpack them without root: ``apt-get download`` + ``dpkg-deb -x``.

Each package ends up in ``<root>/debs/<pkg>/`` (its file tree, e.g. ``usr/share/...``) with a marker file
``.lfdn-extracted`` holding the .deb's file name. A folder with the marker is complete: extraction goes
into a temporary folder next to it that is renamed into place only when done.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..progress import bar, progress_enabled, write

from .cache import cache_dir
from ..errors import UnavailableError

MARKER = ".lfdn-extracted"


def package_dir(package: str, root: Path | None = None) -> Path:
    """The folder a package is (or will be) unpacked into: ``<root>/debs/<package>``."""
    return Path(root if root is not None else cache_dir()) / "debs" / package


def is_extracted(package: str, root: Path | None = None) -> bool:
    """True when ``package`` has been fully unpacked under ``root`` (its marker file exists)."""
    return (package_dir(package, root) / MARKER).is_file()


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise UnavailableError(f"`{cmd[0]}` is not installed: the offline data comes from Debian packages, "
                           f"which needs a Debian/Ubuntu machine with apt-get and dpkg-deb") from exc


def _tail(proc: subprocess.CompletedProcess, lines: int = 6) -> str:
    text = (proc.stderr or "") + (proc.stdout or "")
    return "\n".join(text.strip().splitlines()[-lines:])


def _download(package: str, workdir: Path, target: Path) -> Path:
    """``apt-get download package`` into ``workdir``; returns the .deb path (``target`` is for messages)."""
    cmd = ["apt-get", "download", package]
    proc = _run(cmd, cwd=workdir)
    if proc.returncode != 0:
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            write(f"apt-get download {package} failed; running `apt-get update` and retrying")
            upd = _run(["apt-get", "update"])
            if upd.returncode != 0:
                raise UnavailableError(f"`apt-get update` failed (needed to download {package}):\n{_tail(upd)}")
            proc = _run(cmd, cwd=workdir)
            if proc.returncode != 0:
                raise UnavailableError(f"`apt-get download {package}` failed even after `apt-get update`:\n"
                                   f"{_tail(proc)}")
        else:
            raise UnavailableError(f"`apt-get download {package}` failed:\n{_tail(proc)}\n"
                               f"Run `sudo apt-get update` once, then retry (downloading itself needs no "
                               f"root). Or unpack it yourself: `apt-get download {package} && dpkg-deb -x "
                               f"{package}_*.deb {target}` and create the empty file {target / MARKER}.")
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if len(debs) != 1:
        raise UnavailableError(f"`apt-get download {package}` succeeded but left {len(debs)} files matching "
                           f"{package}_*.deb in {workdir}")
    return debs[0]


def _extract(deb: Path, target: Path) -> None:
    """``dpkg-deb -x deb`` into a temp folder beside ``target``, write the marker, rename into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        proc = _run(["dpkg-deb", "-x", str(deb), str(tmp)])
        if proc.returncode != 0:
            raise UnavailableError(f"`dpkg-deb -x {deb.name}` failed:\n{_tail(proc)}")
        (tmp / MARKER).write_text(deb.name + "\n")
        if target.exists() and not (target / MARKER).is_file():
            shutil.rmtree(target)  # a leftover without the marker is incomplete: replace it
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / MARKER).is_file():  # not another process finishing first: a real error
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def fetch_debian_packages(packages: list[str], root: Path | None = None, progress: bool = True) -> Path:
    """Make sure each package is unpacked under ``<root>/debs/<pkg>/`` and return ``<root>/debs``.

    ``root`` defaults to :func:`cache_dir`. Idempotent: packages that already carry the marker are
    skipped. A missing one is fetched with ``apt-get download`` in a temporary folder (no root needed);
    if that fails and we are root, ``apt-get update`` is run once and the download retried, otherwise a
    ``UnavailableError`` says which command to run. ``progress``: show the download bar. The .deb is then unpacked with ``dpkg-deb -x``
    atomically and deleted.
    """
    root = Path(root) if root is not None else cache_dir()
    debs = root / "debs"
    missing = [p for p in dict.fromkeys(packages) if not is_extracted(p, root)]
    if not missing:
        return debs
    debs.mkdir(parents=True, exist_ok=True)
    with progress_enabled(progress):
        _fetch_missing(missing, root)
    return debs


def _fetch_missing(missing: list[str], root: Path) -> None:
    debs = root / "debs"
    for package in bar(missing, "fetching Debian packages", "pkg", leave=True):
        with tempfile.TemporaryDirectory(prefix=".download-", dir=debs) as work:
            target = package_dir(package, root)
            deb = _download(package, Path(work), target)
            _extract(deb, target)
