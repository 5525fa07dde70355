"""Power and power-mode facts of the machine a benchmark runs on (a leaf module: stdlib only, no torch).

On a Jetson the throughput depends on the power mode, so a benchmark must say which one it ran in:
``power_environment()`` records the board (/proc/device-tree/model), the L4T release (/etc/nv_tegra_release) and
its JetPack, the nvpmodel mode (``nvpmodel -q``) and whether jetson_clocks locked the clocks
(``jetson_clocks --show``, or the same facts read from sysfs when that needs root); on other NVIDIA GPUs what
``nvidia-smi`` says (power draw and limit, SM clocks). ``PowerSampler`` samples the power while timed calls run:
tegrastats on a Jetson (the board's input rail VDD_IN / POM_5V_IN, else the sum of the rails it prints), NVML
(pynvml, or ``nvidia-smi -lms``) for a CUDA device elsewhere, nothing otherwise. ``items_per_joule`` is
items/s over the mean watts.

Everything here degrades to None ("not available"): a missing file or command, a command that fails or takes
longer than a few seconds, output that does not parse. Nothing raises. The parsers are pure functions on the
text of the tools; the commands are run through an injectable ``run`` (one-shot) or ``runner`` (streaming)
so that tests drive them with recorded output (tests/data/power/).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

COMMAND_TIMEOUT_S = 5.0
DEFAULT_INTERVAL_MS = 100
# rails that are the board's (module's) total input; without one of them the total is the sum of the rails
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")
# L4T (Jetson Linux) release -> JetPack release. Source: NVIDIA's JetPack archive pages
# (developer.nvidia.com/embedded/jetpack-archive) and the Jetson Linux release pages (developer.nvidia.com/
# embedded/jetson-linux-archive). Releases not in the table map to their family (R32 -> 4.x, R34/R35 -> 5.x,
# R36 -> 6.x) with the L4T release kept beside it.
JETPACK_OF_L4T = {
    "32.4.3": "4.4", "32.4.4": "4.4.1", "32.5.0": "4.5", "32.5.1": "4.5.1", "32.5.2": "4.5.1",
    "32.6.1": "4.6", "32.7.1": "4.6.1", "32.7.2": "4.6.2", "32.7.3": "4.6.3", "32.7.4": "4.6.4",
    "32.7.5": "4.6.5", "32.7.6": "4.6.6",
    "34.1.0": "5.0 DP", "34.1.1": "5.0.1 DP", "35.1.0": "5.0.2", "35.2.1": "5.1", "35.3.1": "5.1.1",
    "35.4.1": "5.1.2", "35.5.0": "5.1.3", "35.6.0": "5.1.4",
    "36.2.0": "6.0 DP", "36.3.0": "6.0", "36.4.0": "6.1", "36.4.3": "6.2", "36.4.4": "6.2.1",
}
JETPACK_FAMILY = {"32": "4.x", "34": "5.x", "35": "5.x", "36": "6.x"}

_RAIL_RE = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_GR3D_RE = re.compile(r"\bGR3D_FREQ (\d+)%(?:@\[?(\d+))?")
_EMC_RE = re.compile(r"\bEMC_FREQ (\d+)%(?:@(\d+))?")
_RAM_RE = re.compile(r"\bRAM (\d+)/(\d+)MB")
_RELEASE_RE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)(?:\.(\d+))?(?:.*?BOARD:\s*([^,\s]+))?")
_CPU_CLOCK_RE = re.compile(r"^cpu(\d+):\s*(?:Online=(\d)\s+)?\S*?Gov\w*=(\S+)\s+MinFreq=(\d+)\s+MaxFreq=(\d+)\s+"
                           r"CurrentFreq=(\d+)")
_GPU_CLOCK_RE = re.compile(r"^GPU MinFreq=(\d+)\s+MaxFreq=(\d+)\s+CurrentFreq=(\d+)")


# ---------------------------------------------------------------------------------------------- parsers
def parse_tegrastats_line(line: str) -> dict | None:
    """One line of tegrastats. Rails are ``NAME cur/avg`` in mW (``VDD_IN 4947mW/4947mW`` since JetPack 5,
    ``POM_5V_IN 3420/3420`` without the unit before). Returns ``total_w`` (the current value of VDD_IN or
    POM_5V_IN where printed, else the sum of the current values of all rails; None without rails),
    ``total_from`` (the rail's name, or "sum"), ``rails_mw`` {name: current mW}, ``rails_avg_mw`` {name: the
    average tegrastats keeps}, ``gpu_load_pct`` / ``gpu_freq_mhz`` (GR3D_FREQ), ``emc_load_pct`` /
    ``emc_freq_mhz``, ``ram_used_mb`` / ``ram_total_mb`` (None where absent). None for an empty line."""
    if not line or not line.strip():
        return None
    rails, avgs = {}, {}
    for name, cur, avg in _RAIL_RE.findall(line):
        rails[name], avgs[name] = int(cur), int(avg)
    total_from = next((n for n in TOTAL_RAILS if n in rails), "sum" if rails else None)
    if total_from is None:
        total_w = None
    else:
        total_w = (rails[total_from] if total_from != "sum" else sum(rails.values())) / 1000.0
    out = {"total_w": total_w, "total_from": total_from, "rails_mw": rails, "rails_avg_mw": avgs,
           "gpu_load_pct": None, "gpu_freq_mhz": None, "emc_load_pct": None, "emc_freq_mhz": None,
           "ram_used_mb": None, "ram_total_mb": None}
    if m := _GR3D_RE.search(line):
        out["gpu_load_pct"] = int(m.group(1))
        out["gpu_freq_mhz"] = int(m.group(2)) if m.group(2) else None
    if m := _EMC_RE.search(line):
        out["emc_load_pct"] = int(m.group(1))
        out["emc_freq_mhz"] = int(m.group(2)) if m.group(2) else None
    if m := _RAM_RE.search(line):
        out["ram_used_mb"], out["ram_total_mb"] = int(m.group(1)), int(m.group(2))
    return out


def parse_nvpmodel_query(text: str | None) -> dict | None:
    """``nvpmodel -q``: ``NV Power Mode: MAXN`` then a line with the mode's id (``0``); warnings before it
    (``NVPM WARN: ...``) are skipped. {"id": int | None, "name": str}, or None when there is no mode line."""
    if not text:
        return None
    lines = [ln.strip() for ln in text.splitlines()]
    for i, ln in enumerate(lines):
        if ln.startswith("NV Power Mode:"):
            name = ln.split(":", 1)[1].strip()
            mode_id = next((int(x) for x in lines[i + 1:] if x.isdigit()), None)
            return {"id": mode_id, "name": name or None}
    return None


def jetpack_of(l4t: str | None) -> str | None:
    """The JetPack release of an L4T release ("35.4.1" -> "5.1.2"; a release not in the table -> its family,
    "5.x"); None for an unknown major release."""
    if not l4t:
        return None
    if l4t in JETPACK_OF_L4T:
        return JETPACK_OF_L4T[l4t]
    return JETPACK_FAMILY.get(l4t.split(".")[0])


def parse_jetson_release(text: str | None) -> dict | None:
    """/etc/nv_tegra_release (``# R35 (release), REVISION: 4.1, GCID: ..., BOARD: t186ref, ...``):
    {"l4t": "35.4.1", "jetpack": "5.1.2", "board_config": "t186ref"}, or None when it does not parse."""
    if not text:
        return None
    m = _RELEASE_RE.search(text)
    if not m:
        return None
    l4t = f"{m.group(1)}.{m.group(2)}.{m.group(3) or 0}"
    return {"l4t": l4t, "jetpack": jetpack_of(l4t), "board_config": m.group(4)}


def parse_device_tree_model(data: bytes | str | None) -> str | None:
    """/proc/device-tree/model: a NUL-terminated string ("NVIDIA Jetson AGX Orin Developer Kit")."""
    if data is None:
        return None
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    s = data.split("\x00", 1)[0].strip()
    return s or None


def parse_jetson_clocks_show(text: str | None) -> dict | None:
    """``jetson_clocks --show``: per online CPU (``cpu0: Online=1 Governor=schedutil MinFreq=729600
    MaxFreq=2201600 CurrentFreq=1497600 IdleStates: ...``) and the GPU (``GPU MinFreq=... MaxFreq=...
    CurrentFreq=...``). ``locked`` is True when every online CPU has MinFreq == MaxFreq == CurrentFreq and
    the GPU MinFreq == MaxFreq (what jetson_clocks sets), False otherwise, None when neither a CPU nor the
    GPU line is there (e.g. the error text of a run without root). Also ``cpus`` {index: {min, max, cur,
    governor}}, ``gpu`` {min, max, cur} (Hz for the GPU, kHz for CPUs, as printed)."""
    if not text:
        return None
    cpus, gpu = {}, None
    for raw in text.splitlines():
        ln = raw.strip()
        if m := _CPU_CLOCK_RE.match(ln):
            if m.group(2) == "0":  # an offline core keeps its limits but runs nothing
                continue
            cpus[int(m.group(1))] = {"governor": m.group(3), "min": int(m.group(4)), "max": int(m.group(5)),
                                     "cur": int(m.group(6))}
        elif m := _GPU_CLOCK_RE.match(ln):
            gpu = {"min": int(m.group(1)), "max": int(m.group(2)), "cur": int(m.group(3))}
    if not cpus and gpu is None:
        return None
    cpu_locked = all(c["min"] == c["max"] == c["cur"] for c in cpus.values())
    gpu_locked = gpu is None or gpu["min"] == gpu["max"]
    return {"locked": bool(cpu_locked and gpu_locked), "cpus": cpus, "gpu": gpu}


def _smi_value(s: str) -> float | None:
    s = s.strip()
    if not s or s.startswith("["):  # [N/A], [Not Supported], [Unknown Error]
        return None
    try:
        return float(s)
    except ValueError:
        return None


def parse_nvidia_smi_power(csv: str | None) -> list[dict] | None:
    """``nvidia-smi --query-gpu=name,power.draw,power.limit,clocks.sm,clocks.max.sm
    --format=csv,noheader,nounits``: one dict per GPU {name, power_draw_w, power_limit_w, sm_clock_mhz,
    max_sm_clock_mhz}, a value None where nvidia-smi prints [N/A] / [Not Supported]. None for no GPU line."""
    if not csv:
        return None
    out = []
    for ln in csv.splitlines():
        parts = [p.strip() for p in ln.split(",")]
        if len(parts) < 5 or not parts[0]:
            continue
        name, draw, limit, sm, max_sm = parts[0], *parts[-4:]
        if len(parts) > 5:  # a name with commas in it
            name = ",".join(parts[:-4])
        out.append({"name": name, "power_draw_w": _smi_value(draw), "power_limit_w": _smi_value(limit),
                    "sm_clock_mhz": _smi_value(sm), "max_sm_clock_mhz": _smi_value(max_sm)})
    return out or None


# ---------------------------------------------------------------------------------------------- environment
_SBIN = ("/usr/sbin", "/usr/bin", "/usr/local/bin", "/sbin")


def find_command(name: str) -> str | None:
    """The command on PATH or in the system directories (nvpmodel lives in /usr/sbin, often not on a user's
    PATH)."""
    found = shutil.which(name)
    if found:
        return found
    for d in _SBIN:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def run_command(cmd: list[str], timeout: float = COMMAND_TIMEOUT_S) -> str | None:
    """stdout of ``cmd`` when it exists, exits 0 within ``timeout``; else None (never raises)."""
    exe = find_command(cmd[0])
    if exe is None:
        return None
    try:
        p = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return p.stdout if p.returncode == 0 else None


def _read(path: Path, binary: bool = False):
    try:
        return path.read_bytes() if binary else path.read_text(errors="replace")
    except (OSError, ValueError):
        return None


def _sysfs_clocks(root: Path) -> str | None:
    """The facts of ``jetson_clocks --show`` (which needs root) from sysfs, in its line format: the cpufreq
    limits of each online CPU and the GPU's devfreq limits."""
    lines = []
    for d in sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*"), key=lambda p: int(p.name[3:])):
        f = d / "cpufreq"
        vals = [_read(f / n) for n in ("scaling_min_freq", "scaling_max_freq", "scaling_cur_freq", "scaling_governor")]
        if None in vals:
            continue
        online = (_read(d / "online") or "1").strip()
        lines.append(f"{d.name}: Online={online} Governor={vals[3].strip()} MinFreq={vals[0].strip()} "
                     f"MaxFreq={vals[1].strip()} CurrentFreq={vals[2].strip()}")
    for d in sorted((root / "sys/class/devfreq").glob("*")):
        if not re.search(r"gpu|gv11b|ga10b|gp10b|gb10b|gm20b", d.name):
            continue
        vals = [_read(d / n) for n in ("min_freq", "max_freq", "cur_freq")]
        if None not in vals:
            lines.append("GPU MinFreq={} MaxFreq={} CurrentFreq={}".format(*(v.strip() for v in vals)))
            break
    return "\n".join(lines) or None


def jetson_environment(root: str | os.PathLike = "/", run=run_command) -> dict | None:
    """None off a Jetson; else {board, l4t, jetpack, board_config, nvpmodel {id, name}, clocks_locked,
    clocks_source}; each fact None where it cannot be read. A Jetson: /etc/nv_tegra_release exists or the
    device-tree model names a Jetson."""
    root = Path(root)
    release_text = _read(root / "etc/nv_tegra_release")
    board = parse_device_tree_model(_read(root / "proc/device-tree/model", binary=True))
    if release_text is None and not (board and "jetson" in board.lower()):
        return None
    rel = parse_jetson_release(release_text) or {}
    clocks, clocks_source = parse_jetson_clocks_show(run(["jetson_clocks", "--show"])), "jetson_clocks --show"
    if clocks is None:
        clocks, clocks_source = parse_jetson_clocks_show(_sysfs_clocks(root)), "sysfs"
    return {"board": board, "l4t": rel.get("l4t"), "jetpack": rel.get("jetpack"),
            "board_config": rel.get("board_config"), "nvpmodel": parse_nvpmodel_query(run(["nvpmodel", "-q"])),
            "clocks_locked": clocks["locked"] if clocks else None,
            "clocks_source": clocks_source if clocks else None}


NVIDIA_SMI_QUERY = ["nvidia-smi", "--query-gpu=name,power.draw,power.limit,clocks.sm,clocks.max.sm",
                    "--format=csv,noheader,nounits"]


def power_environment(root: str | os.PathLike = "/", run=run_command) -> dict:
    """{"jetson": jetson_environment() (None off a Jetson), "nvidia_smi": [per GPU: name, power draw and
    limit (W), SM clock and its maximum (MHz)] or None without nvidia-smi}. Never raises."""
    try:
        jetson = jetson_environment(root, run)
    except Exception:  # noqa: BLE001 - a fact we cannot read is "not available", never a failed benchmark
        jetson = None
    try:
        smi = parse_nvidia_smi_power(run(NVIDIA_SMI_QUERY))
    except Exception:  # noqa: BLE001
        smi = None
    return {"jetson": jetson, "nvidia_smi": smi}


def describe(env: dict, sampler=None) -> str:
    """One line for the bench's output: what power_environment() found and what samples the power."""
    parts = []
    j = env.get("jetson")
    if j is not None:
        nvp = j.get("nvpmodel") or {}
        locked = {True: "clocks locked", False: "clocks not locked", None: "clocks locked: unknown"}
        parts.append(f"{j.get('board') or 'Jetson'}, L4T {j.get('l4t') or '?'} (JetPack {j.get('jetpack') or '?'}), "
                     f"nvpmodel {nvp.get('id', '?')} {nvp.get('name') or '?'}, {locked[j.get('clocks_locked')]}")
    for g in env.get("nvidia_smi") or ():
        lim = g.get("power_limit_w")
        parts.append(f"{g['name']} (power limit {f'{lim:.0f} W' if lim is not None else 'n/a'})")
    src = getattr(sampler, "source", None)
    return ("; ".join(parts) or "no Jetson, no nvidia-smi") + (
        f"; sampled by {src} every {sampler.interval_ms} ms" if src else "; power not sampled (not available)")


def items_per_joule(items_per_s: float | None, watts: float | None) -> float | None:
    """Items per joule = (items/s) / W; None when either is missing or the power is not positive."""
    if items_per_s is None or watts is None or not watts > 0:
        return None
    return float(items_per_s) / float(watts)


# ---------------------------------------------------------------------------------------------- sampling
class _PopenStream:
    """The default runner's stream: the command's stdout lines; ``close()`` stops the process."""

    def __init__(self, cmd: list[str]):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, text=True, bufsize=1)

    def __iter__(self):
        return iter(self.proc.stdout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=2.0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def popen_runner(cmd: list[str]) -> _PopenStream:
    return _PopenStream(cmd)


class _NvmlStream:
    """NVML through pynvml: the GPU's power in W, one line per interval, until closed."""

    def __init__(self, index: int, interval_s: float):
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        self._interval = interval_s
        self._stop = threading.Event()

    def __iter__(self):
        while not self._stop.is_set():
            try:
                yield f"{self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0}\n"
            except Exception:  # noqa: BLE001 - power not supported on this GPU: no samples
                return
            self._stop.wait(self._interval)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self._nvml.nvmlShutdown()


def _tegrastats_watts(line: str) -> float | None:
    p = parse_tegrastats_line(line)
    return p["total_w"] if p else None


def _smi_watts(line: str) -> float | None:
    return _smi_value(line.split(",")[0]) if line.strip() else None


class PowerSampler:
    """Samples the power in a background thread while it is entered (``with sampler: ...``).

    ``source``: "tegrastats" (``tegrastats --interval MS``, the board's total per line), "nvidia-smi"
    (``nvidia-smi --query-gpu=power.draw ... -i N -lms MS``) or "nvml" (pynvml, polled). ``runner(cmd)``
    starts a command and returns an iterable of its stdout lines with a ``close()`` (default: a subprocess;
    tests pass recorded lines). Each parsed line is a sample (time read, watts). ``window(key)`` marks a timed
    window: ``fields(key, items_per_s)`` is then the mean watts of the samples inside that key's windows only
    (warm-up and anything else between windows excluded), their count, the source and items per joule;
    ``result()`` is the mean over all samples of the last ``with``."""

    def __init__(self, source: str, interval_ms: int = DEFAULT_INTERVAL_MS, gpu_index: int = 0, runner=None,
                 command: str | None = None, clock=time.perf_counter):
        if source not in ("tegrastats", "nvidia-smi", "nvml"):
            raise ValueError(f"unknown power source {source!r}")
        self.source, self.interval_ms, self.gpu_index = source, int(interval_ms), int(gpu_index)
        self.runner = runner  # None: the real tool (a subprocess, or pynvml for "nvml")
        self.command = command or source
        self.clock = clock
        self.error: str | None = None
        self._lock = threading.Lock()
        self._samples: list[tuple[float, float]] = []
        self._windows: dict = {}
        self._stream = None
        self._thread = None

    def command_line(self) -> list[str] | None:
        if self.source == "tegrastats":
            return [self.command, "--interval", str(self.interval_ms)]
        if self.source == "nvidia-smi":
            return [self.command, "--query-gpu=power.draw", "--format=csv,noheader,nounits", "-i",
                    str(self.gpu_index), "-lms", str(self.interval_ms)]
        return ["pynvml", "-i", str(self.gpu_index), "-lms", str(self.interval_ms)]  # polled in-process

    def _parse(self, line: str) -> float | None:
        return _tegrastats_watts(line) if self.source == "tegrastats" else _smi_watts(line)

    def _read(self, stream) -> None:
        try:
            for line in stream:
                w = self._parse(line)
                if w is not None:
                    t = self.clock()
                    with self._lock:
                        self._samples.append((t, w))
        except Exception as exc:  # noqa: BLE001 - a broken pipe or a dead tool ends sampling, not the benchmark
            self.error = f"{type(exc).__name__}: {exc}"

    def __enter__(self):
        with self._lock:
            self._samples, self._windows = [], {}
        self.error = None
        try:
            if self.runner is not None:
                self._stream = self.runner(self.command_line())
            elif self.source == "nvml":
                self._stream = _NvmlStream(self.gpu_index, self.interval_ms / 1000.0)
            else:
                self._stream = popen_runner(self.command_line())
        except Exception as exc:  # noqa: BLE001 - no power source after all: the fields stay None
            self._stream, self.error = None, f"{type(exc).__name__}: {exc}"
            return self
        self._thread = threading.Thread(target=self._read, args=(self._stream,), name=f"power-{self.source}",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._stream = self._thread = None

    @contextlib.contextmanager
    def window(self, key):
        t0 = self.clock()
        try:
            yield
        finally:
            t1 = self.clock()
            with self._lock:
                self._windows.setdefault(key, []).append((t0, t1))

    def samples(self, key=None) -> list[float]:
        """The watts sampled inside ``key``'s windows (every sample when key is None)."""
        with self._lock:
            if key is None:
                return [w for _, w in self._samples]
            spans = list(self._windows.get(key, ()))
            return [w for t, w in self._samples if any(a <= t <= b for a, b in spans)]

    def result(self, key=None) -> dict:
        ws = self.samples(key)
        return {"watts": sum(ws) / len(ws) if ws else None, "samples": len(ws), "source": self.source}

    def fields(self, key, items_per_s: float | None) -> dict:
        r = self.result(key)
        return {"watts": r["watts"], "power_source": self.source, "power_samples": r["samples"],
                "items_per_joule": items_per_joule(items_per_s, r["watts"])}


class NoPowerSampler:
    """Where no power source exists: does nothing, and every field is None."""

    source = None
    interval_ms = None
    error = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def window(self, key):
        return contextlib.nullcontext()

    def result(self, key=None) -> dict:
        return {"watts": None, "samples": 0, "source": None}

    def fields(self, key, items_per_s: float | None) -> dict:
        return {"watts": None, "power_source": None, "power_samples": None, "items_per_joule": None}


def _nvml_usable() -> bool:
    """pynvml (nvidia-ml-py, optional) imports and NVML initialises."""
    try:
        import pynvml
    except ImportError:
        return False
    try:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return True
    except Exception:  # noqa: BLE001 - no driver, no GPU
        return False


def cuda_index(device: str) -> int | None:
    """The NVML / nvidia-smi index of a torch device string ("cuda:1"), through CUDA_VISIBLE_DEVICES where
    that lists indices; None for a non-CUDA device."""
    if not device.startswith("cuda"):
        return None
    idx = int(device.split(":", 1)[1]) if ":" in device else 0
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if visible and all(v.isdigit() for v in visible) and idx < len(visible):
        return int(visible[idx])
    return idx


def power_sampler(device: str, interval_ms: int = DEFAULT_INTERVAL_MS, env: dict | None = None, runner=None,
                  find=find_command):
    """The sampler for a benchmark on ``device``: tegrastats on a Jetson (the whole board, whatever the
    device), NVML (pynvml if importable, else nvidia-smi) for a CUDA device elsewhere, else a NoPowerSampler.
    ``interval_ms`` <= 0 turns sampling off. ``env``: power_environment()'s answer, when already read."""
    if interval_ms is None or interval_ms <= 0:
        return NoPowerSampler()
    env = env if env is not None else {"jetson": jetson_environment()}
    if env.get("jetson") is not None and (exe := find("tegrastats")):
        return PowerSampler("tegrastats", interval_ms, runner=runner, command=exe)
    idx = cuda_index(device)
    if idx is None:
        return NoPowerSampler()
    if runner is None and _nvml_usable():
        return PowerSampler("nvml", interval_ms, gpu_index=idx)
    if exe := find("nvidia-smi"):
        return PowerSampler("nvidia-smi", interval_ms, gpu_index=idx, runner=runner, command=exe)
    return NoPowerSampler()
