"""Crash safety (issue 15, part 4): kill -9 of `python tools/train.py` and `python tools/build_engine.py` at
random moments (a tiny configuration on a generated image folder). Afterwards the output is intact or
absent (never half-written; an engine that was there before is never lost), no temporary file is left
behind once the command is rerun, and rerunning the same command resumes or rebuilds to exactly what an
uninterrupted run gives. 3 trials per command in CI, 20 with LFDN_EDGE_LONG_TESTS=1."""

from __future__ import annotations

from reliability_common import harness, sizes

H = harness()


def test_kill_9_of_train_and_build(tmp_path):
    r = H.crash_trials(tmp_path, sizes()["crash_trials"], seed=7)
    for what in ("train", "build"):
        for t in r["trials"][what]:
            assert t["after_kill"] in ("absent", "intact"), t
            assert t["rerun_rc"] == 0 and t["rerun"] == "intact", t
            assert t.get("rerun_equals_uninterrupted", t.get("rerun_scores_equal")), t
            assert t["temp_files_left_after_rerun"] == 0, t


def test_temporaries_of_dead_writers_are_removed_by_the_next_write(tmp_path):
    """Regression: a kill -9 during a write left `.ckpt.pt.*.tmp` (checkpoint-sized) behind for ever."""
    import os
    import subprocess
    import sys

    from lfdn_edge._atomic import _host, atomic_write

    target = tmp_path / "ckpt.pt"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".ckpt.pt.{_host()}-{int(dead.stdout)}.abcd.tmp"
    live = tmp_path / f".ckpt.pt.{_host()}-{os.getppid()}.efgh.tmp"  # a running process: kept
    other = tmp_path / ".other.pt.x.tmp"
    for f in (stale, live, other):
        f.write_bytes(b"half")
    atomic_write(target, lambda p: p.write_bytes(b"new"))
    assert target.read_bytes() == b"new"
    assert not stale.exists() and live.exists() and other.exists()


def test_a_writer_that_fails_half_way_leaves_the_old_file_intact(tmp_path):
    """atomic_write: a writer that raises (an error or Ctrl-C) after writing part of the new contents leaves
    the previous file byte for byte, or no file where there was none, and no temporary."""
    import pytest

    from lfdn_edge._atomic import atomic_write

    old = b"the previous engine, intact\n" * 1000

    def half_then(exc):
        def writer(p):
            with open(p, "wb") as fh:
                fh.write(b"the new one, half wr")
                fh.flush()
                raise exc
        return writer

    target = tmp_path / "model.engine"
    for exc in (OSError(28, "No space left on device"), KeyboardInterrupt()):
        target.write_bytes(old)
        with pytest.raises(type(exc)):
            atomic_write(target, half_then(exc))
        assert target.read_bytes() == old
        assert [f.name for f in tmp_path.iterdir()] == ["model.engine"]
    target.unlink()
    with pytest.raises(OSError):
        atomic_write(target, half_then(OSError(5, "Input/output error")))
    assert list(tmp_path.iterdir()) == []
