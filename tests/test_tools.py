"""The command-line tools end to end on a small real subset, and their error handling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.data


def run_tool(name, *args, env=None):
    return subprocess.run([sys.executable, str(ROOT / "tools" / name), *map(str, args)], capture_output=True,
                          text=True, encoding="utf-8", errors="replace", timeout=600, env=env)  # CI: ASCII locale


@pytest.fixture(scope="module")
def tool_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tools")
    r = run_tool("train.py", "--data", "fmnist-ood", "--out", out / "ckpt.pt", "--n-train", 500, "--n-cal", 200,
                 "--width", 64, "--depth", 2, "--emb-dim", 64, "--epochs", 2, "--quiet",
                 "--cache-dir", out / "cache")
    assert r.returncode == 0, r.stderr
    r2 = run_tool("evaluate.py", "--ckpt", out / "ckpt.pt", "--json", out / "report.json", "--n-test", 300,
                  "--n-ood", 100, "--quiet", "--cache-dir", out / "cache")
    assert r2.returncode == 0, r2.stderr
    return out, r, r2


def test_train_and_evaluate_cli(tool_run):
    out, r, r2 = tool_run
    assert "wrote" in r.stdout and "thresholds" in r.stdout
    report = json.loads((out / "report.json").read_text())
    sets = ["near", "digits", "letters", "textures", "icons", "emoji", "flags"]
    assert list(report["ood"]) == sets
    for s in sets:
        for method in ("mfsim", "mse", "lr", "knn", "maha"):
            cell = report["ood"][s][method]
            assert set(cell) == {"auroc", "fpr95", "aupr"}
            assert all(0.0 <= v <= 100.0 for v in cell.values())
    assert report["far_ood"] == sets[1:] and report["near_ood"] == ["near"]
    for name in ("hist_mfsim.png", "roc_mfsim.png", "roc_knn.png"):
        assert (out / "plots" / name).stat().st_size > 1000
    assert "far-OOD mean" in r2.stdout


def test_quality_study_on_digits_ood(tmp_path):
    """tools/quality_study.py --data digits-ood on a tiny checkpoint: results per chain and the table's far-set
    columns are digits-ood's own (issue 16's second data set)."""
    r = run_tool("train.py", "--data", "digits-ood", "--out", tmp_path / "d.pt", "--n-train", 300, "--n-cal", 100,
                 "--n-test", 100, "--width", 64, "--depth", 2, "--emb-dim", 64, "--epochs", 2, "--quiet")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "study.json"
    r = run_tool("quality_study.py", "--data", "digits-ood", "--base", tmp_path / "d.pt", "--chains", "project t3 k3",
                 "--noise-seeds", "0,1", "--n-ood", 60, "--label", "tiny", "--json", out)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert not out.with_suffix(".partial.json").exists()
    assert res["data"] == "digits-ood" and res["base"]["far_sets"] == list(("fashion", "letters", "textures",
                                                                            "icons", "emoji", "flags"))
    v = res["base"]["variants"]["project t3 k3 | mfsim"]
    assert v["near"]["n"] == 2 and 0.0 <= v["near"]["mean"] <= 100.0 and list(v["per_set"])[0] == "near"
    assert set(res["base"]["baselines"]) == {"knn", "maha"}
    t = run_tool("quality_study.py", "--json", out, "--table")
    assert t.returncode == 0, t.stderr
    assert "| fashion | letters |" in t.stdout and "| tiny project t3 k3, mfsim |" in t.stdout
    bad = run_tool("quality_study.py", "--base", tmp_path / "d.pt", "--chains", "nope", "--json", out)
    assert bad.returncode == 2 and "unknown chain" in bad.stderr


def test_cli_errors_are_clear(tmp_path):
    r = run_tool("evaluate.py", "--ckpt", tmp_path / "missing.pt")
    assert r.returncode == 2 and "checkpoint not found" in r.stderr
    r = run_tool("train.py", "--data", tmp_path / "no_such_folder", "--out", tmp_path / "c.pt")
    assert r.returncode == 2 and "error:" in r.stderr
    (tmp_path / "empty").mkdir()
    r = run_tool("train.py", "--data", tmp_path / "empty", "--out", tmp_path / "c.pt")
    assert r.returncode == 2 and "no images" in r.stderr
    assert not (tmp_path / "c.pt").exists()
    # scoring settings that only calibration would reject are refused before any work, leaving no file
    r = run_tool("train.py", "--out", tmp_path / "t.pt", "--t", 200)
    assert r.returncode == 2 and "noise level t must be in [0, 99]" in r.stderr
    assert not (tmp_path / "t.pt").exists()
    r = run_tool("train.py", "--out", tmp_path / "t.pt", "--n-train", 0)
    assert r.returncode == 2 and "--n-train must be >= 1" in r.stderr
    r = run_tool("evaluate.py", "--ckpt", tmp_path / "c.pt", "--json", tmp_path)
    assert r.returncode == 2 and "is a folder" in r.stderr
    from lfdn_edge.artifact.file import write_engine

    write_engine(tmp_path / "x.engine", {"backend": "onnx", "precision": "fp32", "layout": {}, "score": {},
                                         "score_type": "mfsim", "batch": {}}, b"payload")
    r = run_tool("evaluate.py", "--ckpt", tmp_path / "x.engine")
    assert r.returncode == 2 and "is an lfdn-edge engine, not a checkpoint" in r.stderr
    r = run_tool("train.py", "--help")
    assert r.returncode == 0 and "--backbone" in r.stdout
