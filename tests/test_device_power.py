"""lfdn_edge.device_power and the bench's power fields: the parsers on recorded tool output in the real formats
(tests/data/power/, written from NVIDIA's documentation: tegrastats of an AGX Orin, an Orin Nano, an AGX Xavier
and a Nano on JetPack 4, nvpmodel -q, /etc/nv_tegra_release of R35.4.1 and R36.3.0, /proc/device-tree/model,
jetson_clocks --show locked and not, nvidia-smi CSV), the sampler driven by a fake runner, the environment on
this machine (no Jetson: all None) and on a fake Jetson root, and the bench JSON with and without a power source.
No Jetson and no GPU was measured for any of this."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from lfdn_edge import device_power as dp

DATA = Path(__file__).resolve().parent / "data" / "power"
ON_JETSON = Path("/etc/nv_tegra_release").exists() or "jetson" in (dp.parse_device_tree_model(
    Path("/proc/device-tree/model").read_bytes() if Path("/proc/device-tree/model").exists() else None) or "").lower()
not_on_jetson = pytest.mark.skipif(ON_JETSON, reason="checks the 'not available' answer of a machine that is no Jetson")


def lines(name: str) -> list[str]:
    return (DATA / name).read_text().splitlines()


# ---------------------------------------------------------------------------------------------- tegrastats
def test_tegrastats_orin_agx_sums_the_rails():
    got = [dp.parse_tegrastats_line(ln) for ln in lines("tegrastats_orin_agx.log")]
    # VDD_GPU_SOC + VDD_CPU_CV + VIN_SYS_5V0 + VDDQ_VDD2_1V8AO (no VDD_IN on the AGX Orin)
    assert [g["total_w"] for g in got] == pytest.approx([7.164, 22.032, 22.585, 22.506])
    assert {g["total_from"] for g in got} == {"sum"}
    assert got[0]["rails_mw"] == {"VDD_GPU_SOC": 2781, "VDD_CPU_CV": 463, "VIN_SYS_5V0": 3618, "VDDQ_VDD2_1V8AO": 302}
    assert got[1]["rails_avg_mw"] == {"VDD_GPU_SOC": 8801, "VDD_CPU_CV": 1025, "VIN_SYS_5V0": 4016,
                                      "VDDQ_VDD2_1V8AO": 755}
    assert [(g["gpu_load_pct"], g["gpu_freq_mhz"]) for g in got] == [(0, 305), (97, 1300), (98, 1300), (99, 1300)]
    assert (got[1]["emc_load_pct"], got[1]["emc_freq_mhz"]) == (21, 3199)
    assert (got[0]["ram_used_mb"], got[0]["ram_total_mb"]) == (2553, 30536)


def test_tegrastats_orin_nano_takes_vdd_in_as_the_total():
    a, b = (dp.parse_tegrastats_line(ln) for ln in lines("tegrastats_orin_nano.log"))
    assert (a["total_w"], a["total_from"]) == (pytest.approx(4.947), "VDD_IN")
    assert b["total_w"] == pytest.approx(9.613)  # VDD_IN alone, not VDD_IN + its sub-rails
    assert b["rails_mw"] == {"VDD_IN": 9613, "VDD_CPU_GPU_CV": 3850, "VDD_SOC": 2267}
    assert (b["gpu_load_pct"], b["gpu_freq_mhz"]) == (99, None)  # "GR3D_FREQ 99%" without a frequency


def test_tegrastats_jetpack4_lines_without_the_mw_unit():
    (x,) = (dp.parse_tegrastats_line(ln) for ln in lines("tegrastats_xavier_jp4.log"))
    assert x["rails_mw"] == {"GPU": 0, "CPU": 311, "SOC": 1400, "CV": 0, "VDDRQ": 155, "SYS5V": 1747}
    assert (x["total_w"], x["total_from"]) == (pytest.approx(3.613), "sum")
    assert (x["gpu_load_pct"], x["gpu_freq_mhz"], x["emc_freq_mhz"]) == (0, 114, 1600)
    (n,) = (dp.parse_tegrastats_line(ln) for ln in lines("tegrastats_nano_jp4.log"))
    assert (n["total_w"], n["total_from"]) == (pytest.approx(3.42), "POM_5V_IN")
    assert n["rails_mw"] == {"POM_5V_IN": 3420, "POM_5V_GPU": 0, "POM_5V_CPU": 412}  # not RAM, SWAP, IRAM
    assert (n["ram_used_mb"], n["ram_total_mb"]) == (1356, 3964)


def test_tegrastats_line_without_rails_has_no_total():
    x = dp.parse_tegrastats_line("RAM 3468/3983MB (lfb 48x4MB) SWAP 873/8192MB (cached 295MB) cpu [17%,13%]@408")
    assert x["total_w"] is None and x["total_from"] is None and x["rails_mw"] == {}
    assert dp.parse_tegrastats_line("") is None and dp.parse_tegrastats_line("  \n") is None


# ---------------------------------------------------------------------------------------------- other tools
def test_nvpmodel_query():
    assert dp.parse_nvpmodel_query((DATA / "nvpmodel_q_orin_maxn.txt").read_text()) == {"id": 0, "name": "MAXN"}
    assert dp.parse_nvpmodel_query((DATA / "nvpmodel_q_orin_nx_15w.txt").read_text()) == {"id": 2, "name": "15W"}
    assert dp.parse_nvpmodel_query("nvpmodel: command not found") is None
    assert dp.parse_nvpmodel_query(None) is None


def test_jetson_release_and_jetpack_table():
    assert dp.parse_jetson_release((DATA / "nv_tegra_release_r35.4.1").read_text()) == {
        "l4t": "35.4.1", "jetpack": "5.1.2", "board_config": "t186ref"}
    assert dp.parse_jetson_release((DATA / "nv_tegra_release_r36.3.0").read_text()) == {
        "l4t": "36.3.0", "jetpack": "6.0", "board_config": "generic"}
    assert dp.parse_jetson_release("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64")[
        "jetpack"] == "4.6.1"
    assert dp.jetpack_of("35.9.9") == "5.x" and dp.jetpack_of("32.9.0") == "4.x" and dp.jetpack_of("36.9.0") == "6.x"
    assert dp.jetpack_of("28.2.0") is None and dp.jetpack_of(None) is None
    assert dp.parse_jetson_release("Ubuntu 22.04") is None and dp.parse_jetson_release(None) is None


def test_device_tree_model_is_nul_terminated():
    raw = (DATA / "device_tree_model_agx_orin").read_bytes()
    assert raw.endswith(b"\x00")
    assert dp.parse_device_tree_model(raw) == "NVIDIA Jetson AGX Orin Developer Kit"
    assert dp.parse_device_tree_model(b"\x00") is None and dp.parse_device_tree_model(None) is None


def test_jetson_clocks_show_locked_and_not():
    locked = dp.parse_jetson_clocks_show((DATA / "jetson_clocks_show_locked.txt").read_text())
    assert locked["locked"] is True and sorted(locked["cpus"]) == list(range(12))
    assert locked["cpus"][0] == {"governor": "schedutil", "min": 2201600, "max": 2201600, "cur": 2201600}
    assert locked["gpu"] == {"min": 1300500000, "max": 1300500000, "cur": 1300500000}
    unlocked_text = (DATA / "jetson_clocks_show_unlocked.txt").read_text()
    unlocked = dp.parse_jetson_clocks_show(unlocked_text)
    assert unlocked["locked"] is False
    assert unlocked["cpus"][0] == {"governor": "schedutil", "min": 729600, "max": 2201600, "cur": 1497600}
    assert unlocked["gpu"] == {"min": 306000000, "max": 1300500000, "cur": 306000000}
    # limits pinned but one core not (yet) at them: not locked
    lagging = (DATA / "jetson_clocks_show_locked.txt").read_text().replace(
        "cpu3: Online=1 Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600",
        "cpu3: Online=1 Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=1497600")
    assert lagging != (DATA / "jetson_clocks_show_locked.txt").read_text()
    assert dp.parse_jetson_clocks_show(lagging)["locked"] is False
    # CPUs locked but the GPU free: not locked
    gpu_free = (DATA / "jetson_clocks_show_locked.txt").read_text().replace(
        "GPU MinFreq=1300500000", "GPU MinFreq=306000000")
    assert dp.parse_jetson_clocks_show(gpu_free)["locked"] is False
    # an offline core keeps its (unlocked) limits and does not count
    offline = (DATA / "jetson_clocks_show_locked.txt").read_text() + (
        "cpu12: Online=0 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=729600 IdleStates: WFI=1 c7=1\n")
    assert dp.parse_jetson_clocks_show(offline)["locked"] is True
    # the L4T 28 format (TX1, "Gonvernor" as printed then)
    tx1 = ("cpu0: Gonvernor=interactive MinFreq=1734000 MaxFreq=1734000 CurrentFreq=1734000\n"
           "GPU MinFreq=998400000 MaxFreq=998400000 CurrentFreq=998400000\n")
    assert dp.parse_jetson_clocks_show(tx1)["locked"] is True
    assert dp.parse_jetson_clocks_show("Error: Run jetson_clocks as root") is None


def test_nvidia_smi_power_csv():
    assert dp.parse_nvidia_smi_power((DATA / "nvidia_smi_h100.csv").read_text()) == [
        {"name": "NVIDIA H100 80GB HBM3", "power_draw_w": 71.24, "power_limit_w": 700.0, "sm_clock_mhz": 1980.0,
         "max_sm_clock_mhz": 1980.0}]
    na = dp.parse_nvidia_smi_power((DATA / "nvidia_smi_na.csv").read_text())
    assert na == [{"name": "NVIDIA GeForce GTX 1050 Ti", "power_draw_w": None, "power_limit_w": None,
                   "sm_clock_mhz": 1290.0, "max_sm_clock_mhz": 1911.0},
                  {"name": "Tesla K80", "power_draw_w": None, "power_limit_w": 149.0, "sm_clock_mhz": 562.0,
                   "max_sm_clock_mhz": 875.0}]
    assert dp.parse_nvidia_smi_power("") is None and dp.parse_nvidia_smi_power("No devices were found") is None


def test_items_per_joule():
    assert dp.items_per_joule(100.0, 4.0) == 25.0
    assert dp.items_per_joule(100.0, None) is None and dp.items_per_joule(100.0, 0.0) is None
    assert dp.items_per_joule(100.0, -1.0) is None and dp.items_per_joule(None, 5.0) is None


# ---------------------------------------------------------------------------------------------- sampler
class FakeStream:
    """A runner's stream: each phase's lines once its gate is set; ``done[i]`` set when phase i is consumed."""

    def __init__(self, phases, gates=None):
        self.phases = phases
        self.gates = gates or [None] * len(phases)
        self.done = [threading.Event() for _ in phases]
        self.closed = threading.Event()

    def __iter__(self):
        for i, (gate, phase) in enumerate(zip(self.gates, self.phases)):
            if gate is not None:
                gate.wait(5.0)
            yield from phase
            self.done[i].set()

    def close(self):
        self.closed.set()


class FakeRunner:
    def __init__(self, stream):
        self.stream, self.commands = stream, []

    def __call__(self, cmd):
        self.commands.append(list(cmd))
        return self.stream


def test_sampler_mean_watts_from_tegrastats_lines():
    stream = FakeStream([lines("tegrastats_orin_agx.log")])
    run = FakeRunner(stream)
    s = dp.PowerSampler("tegrastats", 100, runner=run, command="/usr/bin/tegrastats")
    with s:
        assert stream.done[0].wait(5.0)
    assert run.commands == [["/usr/bin/tegrastats", "--interval", "100"]]
    assert stream.closed.is_set()
    r = s.result()
    assert r["samples"] == 4 and r["source"] == "tegrastats"
    assert r["watts"] == pytest.approx((7.164 + 22.032 + 22.585 + 22.506) / 4)  # 18.57175 W


def test_sampler_counts_only_the_samples_inside_each_window():
    orin = lines("tegrastats_orin_agx.log")
    gates = [threading.Event() for _ in range(3)]
    stream = FakeStream([orin[:2], orin[2:3], orin[3:]], gates)
    s = dp.PowerSampler("tegrastats", 50, runner=FakeRunner(stream))
    with s:
        with s.window("a"):
            gates[0].set()
            assert stream.done[0].wait(5.0)
        gates[1].set()  # between windows (a warm-up call, another variant's switch): not counted
        assert stream.done[1].wait(5.0)
        with s.window("b"):
            gates[2].set()
            assert stream.done[2].wait(5.0)
    assert s.result("a") == {"watts": pytest.approx((7.164 + 22.032) / 2), "samples": 2, "source": "tegrastats"}
    fb = s.fields("b", 45.012)
    assert fb == {"watts": pytest.approx(22.506), "power_source": "tegrastats", "power_samples": 1,
                  "items_per_joule": pytest.approx(2.0)}
    assert s.result()["samples"] == 4
    assert s.fields("never", 10.0) == {"watts": None, "power_source": "tegrastats", "power_samples": 0,
                                       "items_per_joule": None}


def test_sampler_nvidia_smi_lines_and_na_values():
    stream = FakeStream([lines("nvidia_smi_lms_power.csv") + ["[N/A]", ""]])
    run = FakeRunner(stream)
    s = dp.PowerSampler("nvidia-smi", 200, gpu_index=1, runner=run, command="nvidia-smi")
    with s:
        assert stream.done[0].wait(5.0)
    assert run.commands[0][-4:] == ["-i", "1", "-lms", "200"]
    assert "--query-gpu=power.draw" in run.commands[0]
    assert s.result() == {"watts": pytest.approx((71.24 + 152.80 + 401.33 + 398.91) / 4), "samples": 4,
                          "source": "nvidia-smi"}


def test_sampler_whose_tool_fails_gives_none():
    def broken(cmd):
        raise FileNotFoundError(cmd[0])

    s = dp.PowerSampler("tegrastats", runner=broken)
    with s:
        with s.window(0):
            pass
    assert s.fields(0, 100.0) == {"watts": None, "power_source": "tegrastats", "power_samples": 0,
                                  "items_per_joule": None}
    assert "FileNotFoundError" in s.error


def test_real_subprocess_runner_is_started_and_stopped(tmp_path):
    """The default runner on a stand-in tool (a shell loop printing a tegrastats line): lines read while it
    runs, the process ended on exit."""
    tool = tmp_path / "tegrastats"
    line = lines("tegrastats_orin_nano.log")[1]
    tool.write_text(f"#!/bin/sh\nwhile true; do echo '{line}'; sleep 0.02; done\n")
    tool.chmod(0o755)
    s = dp.PowerSampler("tegrastats", 20, command=str(tool))
    with s:
        deadline = time.monotonic() + 5.0
        while not s.samples() and time.monotonic() < deadline:
            time.sleep(0.01)
        proc = s._stream.proc
    assert proc.poll() is not None  # stopped
    r = s.result()
    assert r["samples"] >= 1 and r["watts"] == pytest.approx(9.613)


def test_no_power_sampler_and_the_choice_of_source(monkeypatch):
    none = dp.power_sampler("cpu", 100, {"jetson": None}, find=lambda name: None)
    assert isinstance(none, dp.NoPowerSampler) and none.source is None
    with none, none.window(0):
        pass
    assert none.fields(0, 50.0) == {"watts": None, "power_source": None, "power_samples": None,
                                    "items_per_joule": None}
    jetson = {"jetson": {"board": "NVIDIA Jetson AGX Orin Developer Kit"}}
    s = dp.power_sampler("cpu", 100, jetson, runner=FakeRunner(None), find=lambda name: f"/usr/bin/{name}")
    assert s.source == "tegrastats" and s.command_line() == ["/usr/bin/tegrastats", "--interval", "100"]
    assert isinstance(dp.power_sampler("cpu", 0, jetson, find=lambda n: f"/usr/bin/{n}"), dp.NoPowerSampler)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    s = dp.power_sampler("cuda:1", 100, {"jetson": None}, runner=FakeRunner(None), find=lambda n: f"/usr/bin/{n}")
    assert s.source == "nvidia-smi" and s.gpu_index == 3
    assert isinstance(dp.power_sampler("cpu", 100, {"jetson": None}, find=lambda n: f"/usr/bin/{n}"),
                      dp.NoPowerSampler)  # GPU power is not the power of a CPU benchmark


# ---------------------------------------------------------------------------------------------- environment
@not_on_jetson
def test_power_environment_here_is_not_available():
    env = dp.power_environment()
    assert env["jetson"] is None  # this machine is no Jetson
    assert set(env) == {"jetson", "nvidia_smi"}
    if dp.find_command("nvidia-smi") is None:
        assert env["nvidia_smi"] is None

    def exploding(cmd, timeout=None):
        raise RuntimeError("boom")

    assert dp.power_environment(run=exploding) == {"jetson": None, "nvidia_smi": None}


def fake_jetson_root(tmp_path: Path, release="nv_tegra_release_r35.4.1") -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "nv_tegra_release").write_text((DATA / release).read_text())
    (tmp_path / "proc" / "device-tree").mkdir(parents=True)
    (tmp_path / "proc" / "device-tree" / "model").write_bytes((DATA / "device_tree_model_agx_orin").read_bytes())
    return tmp_path


def fake_run(outputs: dict):
    def run(cmd, timeout=None):
        return outputs.get(cmd[0])
    return run


def test_power_environment_on_a_fake_jetson(tmp_path):
    root = fake_jetson_root(tmp_path)
    run = fake_run({"nvpmodel": (DATA / "nvpmodel_q_orin_maxn.txt").read_text(),
                    "jetson_clocks": (DATA / "jetson_clocks_show_locked.txt").read_text()})
    env = dp.power_environment(root, run)
    assert env == {"jetson": {"board": "NVIDIA Jetson AGX Orin Developer Kit", "l4t": "35.4.1", "jetpack": "5.1.2",
                              "board_config": "t186ref", "nvpmodel": {"id": 0, "name": "MAXN"},
                              "clocks_locked": True, "clocks_source": "jetson_clocks --show"},
                   "nvidia_smi": None}


def test_power_environment_reads_the_clocks_from_sysfs_without_root(tmp_path):
    root = fake_jetson_root(tmp_path, "nv_tegra_release_r36.3.0")
    for i, (lo, cur) in enumerate([(2201600, 2201600), (729600, 1497600)]):
        f = root / "sys/devices/system/cpu" / f"cpu{i}" / "cpufreq"
        f.mkdir(parents=True)
        for n, v in {"scaling_min_freq": lo, "scaling_max_freq": 2201600, "scaling_cur_freq": cur,
                     "scaling_governor": "schedutil"}.items():
            (f / n).write_text(f"{v}\n")
    g = root / "sys/class/devfreq/17000000.ga10b"
    g.mkdir(parents=True)
    for n, v in {"min_freq": 1300500000, "max_freq": 1300500000, "cur_freq": 1300500000}.items():
        (g / n).write_text(f"{v}\n")
    run = fake_run({"jetson_clocks": None, "nvpmodel": (DATA / "nvpmodel_q_orin_nx_15w.txt").read_text()})
    j = dp.power_environment(root, run)["jetson"]
    assert (j["l4t"], j["jetpack"], j["nvpmodel"]) == ("36.3.0", "6.0", {"id": 2, "name": "15W"})
    assert (j["clocks_locked"], j["clocks_source"]) == (False, "sysfs")  # cpu1 is not locked
    (root / "sys/devices/system/cpu/cpu1/cpufreq/scaling_min_freq").write_text("2201600\n")
    (root / "sys/devices/system/cpu/cpu1/cpufreq/scaling_cur_freq").write_text("2201600\n")
    assert dp.power_environment(root, run)["jetson"]["clocks_locked"] is True


# ---------------------------------------------------------------------------------------------- bench JSON
@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from lfdn_edge.benchmark import paper_checkpoint

    path = tmp_path_factory.mktemp("power") / "tiny.pt"
    paper_checkpoint(stage_dims=(4, 8), width=16, depth=2, emb_dim=16).save(path)
    return path


def run_bench(ckpt, out, *extra):
    from lfdn_edge.cli import bench

    rc = bench.main(["--ckpt", str(ckpt), "--backends", "torch,torch-fp16", "--batch", "2", "--warmup", "1",
                     "--min-reps", "2", "--parity-batch", "0", "--no-probe", "--json", str(out), *extra])
    assert rc == 0
    return json.loads(out.read_text())


@not_on_jetson
def test_bench_json_has_the_power_fields_null_here(tiny_ckpt, tmp_path, capsys):
    """--device cpu off a Jetson: no power source (a GPU's board power is not a CPU benchmark's power)."""
    rep = run_bench(tiny_ckpt, tmp_path / "b.json", "--min-time", "0", "--rounds", "1")
    smi = rep["power"].pop("nvidia_smi")
    assert rep["power"] == {"jetson": None, "source": None, "interval_ms": None, "error": None}
    no_smi = dp.find_command("nvidia-smi") is None
    if no_smi:  # as on the machine this was written on
        assert smi is None
    assert len(rep["results"]) == 2
    for r in rep["results"]:
        assert {k: r[k] for k in ("watts", "power_source", "power_samples", "items_per_joule")} == {
            "watts": None, "power_source": None, "power_samples": None, "items_per_joule": None}
    out = capsys.readouterr().out
    assert "items/J" not in out and "power not sampled (not available)" in out
    if no_smi:
        assert "power: no Jetson, no nvidia-smi; power not sampled" in out


class EndlessStream:
    """tegrastats as it runs: one line every few ms until closed."""

    def __init__(self, line):
        self.line, self.stop = line, threading.Event()

    def __iter__(self):
        while not self.stop.is_set():
            yield self.line
            time.sleep(0.002)

    def close(self):
        self.stop.set()


def test_bench_json_filled_from_fixtures(tiny_ckpt, tmp_path, monkeypatch, capsys):
    root = fake_jetson_root(tmp_path)
    run = fake_run({"nvpmodel": (DATA / "nvpmodel_q_orin_maxn.txt").read_text(),
                    "jetson_clocks": (DATA / "jetson_clocks_show_unlocked.txt").read_text()})
    real_env = dp.power_environment
    monkeypatch.setattr(dp, "power_environment", lambda: real_env(root, run))
    line = lines("tegrastats_orin_nano.log")[1]  # VDD_IN 9613 mW
    runner = FakeRunner(EndlessStream(line))
    monkeypatch.setattr(dp, "power_sampler", lambda device, interval_ms, env: dp.PowerSampler(
        "tegrastats", interval_ms, runner=runner, command="/usr/bin/tegrastats"))
    rep = run_bench(tiny_ckpt, tmp_path / "b.json", "--min-time", "0.2", "--rounds", "2", "--power-interval-ms", "5")
    assert rep["power"]["jetson"] == {"board": "NVIDIA Jetson AGX Orin Developer Kit", "l4t": "35.4.1",
                                      "jetpack": "5.1.2", "board_config": "t186ref",
                                      "nvpmodel": {"id": 0, "name": "MAXN"}, "clocks_locked": False,
                                      "clocks_source": "jetson_clocks --show"}
    assert (rep["power"]["source"], rep["power"]["interval_ms"], rep["power"]["error"]) == ("tegrastats", 5, None)
    assert runner.commands[0] == ["/usr/bin/tegrastats", "--interval", "5"]
    for r in rep["results"]:
        assert r["power_source"] == "tegrastats" and r["power_samples"] > 0
        assert r["watts"] == pytest.approx(9.613)
        assert r["items_per_joule"] == pytest.approx(r["items_per_s"] / r["watts"])
    out = capsys.readouterr().out
    assert "items/J" in out and "sampled by tegrastats every 5 ms" in out


def test_the_module_is_a_leaf_without_torch():
    """Stdlib only: importing it loads neither torch nor numpy (test_layering checks its lfdn_edge imports)."""
    import subprocess
    import sys

    code = "import sys, lfdn_edge.device_power; print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
