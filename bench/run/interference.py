"""What else ran on the machine while one configuration trained: a sampler thread in the sweep's own process.

Every SAMPLE_INTERVAL_S it reads (psutil) the CPU time of every process outside the configuration's process tree and
outside the sweep itself, and the 1-minute load average; on CUDA (nvidia-ml-py, NVIDIA's binding, imported as pynvml)
the other processes on the configuration's GPUs, the SM clock against its maximum, the clock throttle reasons and the
temperature. The summary goes into the configuration's record ("interference"); bench.explain.plausibility.noisy
turns it into the row's `noisy` flag against NOISY_CPU_SHARE and NOISY_GPU_THROTTLE.

CPU share = CPU seconds of the other processes / (sampled wall seconds x usable cores). A process that starts and ends
between two samples is not seen (its share is a lower bound); CPU time the hypervisor steals is not a process's and is
reported apart (steal_share).
"""

from __future__ import annotations

import os
import threading
import time

import psutil

SAMPLE_INTERVAL_S = 0.5
TOP_OTHERS = 3
"""How many of the busiest other processes a record names."""
THROTTLE_NAMES = {
    "ClocksThrottleReasonGpuIdle": "gpu_idle", "ClocksThrottleReasonApplicationsClocksSetting": "applications_clocks",
    "ClocksThrottleReasonSwPowerCap": "sw_power_cap", "ClocksThrottleReasonHwSlowdown": "hw_slowdown",
    "ClocksThrottleReasonSyncBoost": "sync_boost", "ClocksThrottleReasonSwThermalSlowdown": "sw_thermal_slowdown",
    "ClocksThrottleReasonHwThermalSlowdown": "hw_thermal_slowdown",
    "ClocksThrottleReasonHwPowerBrakeSlowdown": "hw_power_brake_slowdown",
    "ClocksThrottleReasonDisplayClockSetting": "display_clock",
}
"""pynvml's nvml<name> bit masks and the names records use (bench.explain.plausibility.NOISY_GPU_THROTTLE)."""


def _cpu_s(proc: psutil.Process) -> float | None:
    try:
        t = proc.cpu_times()
        return t.user + t.system
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


class _Gpus:
    """NVML readings of the configuration's GPUs; `unavailable` says why there are none (no driver, no library)."""

    def __init__(self, indices: list[int]):
        self.unavailable: str | None = None
        self.handles = []
        self.other_pids: set[int] = set()
        self.min_clock_ratio: float | None = None
        self.reasons: set[str] = set()
        self.max_temperature_c: int | None = None
        try:
            import pynvml
            self.nvml = pynvml
            pynvml.nvmlInit()
            self.handles = [self._handle(i) for i in indices]
        except Exception as exc:  # pynvml.NVMLError, ImportError, a missing driver library: all read "unavailable"
            self.unavailable = f"NVML unavailable: {type(exc).__name__}: {exc}".strip()

    def _handle(self, index: int):
        """NVML counts physical GPUs; CUDA_VISIBLE_DEVICES may renumber them (indices or UUIDs)."""
        visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        if index < len(visible):
            name = visible[index]
            if not name.isdigit():
                return self.nvml.nvmlDeviceGetHandleByUUID(name)
            index = int(name)
        return self.nvml.nvmlDeviceGetHandleByIndex(index)

    def sample(self, tree: set[int]) -> None:
        nvml = self.nvml
        for h in self.handles:
            try:
                for p in nvml.nvmlDeviceGetComputeRunningProcesses(h):
                    if p.pid not in tree and p.pid != os.getpid():
                        self.other_pids.add(p.pid)
                clock = nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM)
                top = nvml.nvmlDeviceGetMaxClockInfo(h, nvml.NVML_CLOCK_SM)
                if top:
                    ratio = clock / top
                    self.min_clock_ratio = ratio if self.min_clock_ratio is None else min(self.min_clock_ratio, ratio)
                mask = nvml.nvmlDeviceGetCurrentClocksThrottleReasons(h)
                self.reasons |= {name for attr, name in THROTTLE_NAMES.items()
                                 if mask & getattr(nvml, "nvml" + attr, 0)}
                temp = nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)
                self.max_temperature_c = temp if self.max_temperature_c is None else max(self.max_temperature_c, temp)
            except nvml.NVMLError as exc:  # one reading a GPU does not support: say so, keep the others
                self.unavailable = self.unavailable or f"NVML: {exc}"

    def summary(self) -> dict:
        if not self.handles:
            return {"available": False, "reason": self.unavailable}
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError:
            pass
        return {"available": True, "gpus": len(self.handles), "other_processes": sorted(self.other_pids),
                "min_sm_clock_ratio": self.min_clock_ratio, "throttle_reasons": sorted(self.reasons),
                "max_temperature_c": self.max_temperature_c, "partial": self.unavailable}


class InterferenceSampler:
    """Samples the machine in a background thread from start() until stop(); follow(pid) names the configuration's
    root process once it exists (before that, every process but the sweep counts as other).

        sampler = InterferenceSampler(gpus=[0, 1]).start()
        ... run the configuration, calling sampler.follow(proc.pid) ...
        record["interference"] = sampler.stop()
    """

    def __init__(self, gpus: list[int] | None = None, interval_s: float = SAMPLE_INTERVAL_S):
        self.interval_s = interval_s
        self.gpu_indices = gpus or []
        self.root: int | None = None
        self.cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="interference-sampler", daemon=True)
        self._seen: dict[int, float] = {}
        self.other_cpu_s = 0.0
        self.by_name: dict[str, float] = {}
        self.wall_s = 0.0
        self.steal_s = 0.0
        self.load: list[float] = []
        self.samples = 0

    def follow(self, pid: int) -> None:
        self.root = pid

    def start(self) -> InterferenceSampler:
        self.gpus = _Gpus(self.gpu_indices) if self.gpu_indices else None
        self._tick = time.monotonic()
        self._steal = self._steal_now()
        self._sample(first=True)
        self._thread.start()
        return self

    def _tree(self) -> set[int]:
        mine = {os.getpid()}
        if self.root is None:
            return mine
        try:
            root = psutil.Process(self.root)
            return mine | {self.root} | {c.pid for c in root.children(recursive=True)}
        except psutil.NoSuchProcess:
            return mine | {self.root}

    def _steal_now(self) -> float:
        per_cpu = psutil.cpu_times(percpu=True)
        chosen = [per_cpu[i] for i in self.cores if i < len(per_cpu)] if self.cores else per_cpu
        return sum(getattr(t, "steal", 0.0) for t in chosen)

    def _sample(self, first: bool = False) -> None:
        """Add the CPU time other processes used since the last sample; processes first seen now count from their
        start if they started after the last sample, else from now."""
        now = time.monotonic()
        tree = self._tree()
        seen = {}
        for proc in psutil.process_iter(["name", "create_time"]):
            if proc.pid in tree:
                continue
            used = _cpu_s(proc)
            if used is None:
                continue
            seen[proc.pid] = used
            if first:
                continue
            before = self._seen.get(proc.pid)
            if before is None:
                born = proc.info.get("create_time") or 0.0
                before = 0.0 if born >= time.time() - (now - self._tick) else used
            delta = max(0.0, used - before)
            if delta:
                self.other_cpu_s += delta
                name = proc.info.get("name") or str(proc.pid)
                self.by_name[name] = self.by_name.get(name, 0.0) + delta
        self._seen = seen
        if not first:
            self.wall_s += now - self._tick
            steal = self._steal_now()
            self.steal_s += max(0.0, steal - self._steal)
            self._steal = steal
        self._tick = now
        self.load.append(psutil.getloadavg()[0])
        if self.gpus and self.gpus.handles:
            self.gpus.sample(tree)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def stop(self) -> dict:
        """End sampling (one last sample) and return the record's "interference" summary."""
        self._stop.set()
        self._thread.join(timeout=10)
        self._sample()
        cores = len(self.cores) if self.cores else os.cpu_count() or 1
        capacity = self.wall_s * cores
        top = sorted(self.by_name.items(), key=lambda kv: -kv[1])[:TOP_OTHERS]
        summary = {
            "interval_s": self.interval_s, "samples": self.samples, "wall_s": round(self.wall_s, 3), "cores": cores,
            "other_cpu_s": round(self.other_cpu_s, 3),
            "other_cpu_share": self.other_cpu_s / capacity if capacity else None,
            "steal_share": self.steal_s / capacity if capacity else None,
            "top_others": [{"name": name, "cpu_s": round(cpu, 3)} for name, cpu in top],
            "load_avg_1m_max": max(self.load) if self.load else None,
            "load_avg_1m_mean": sum(self.load) / len(self.load) if self.load else None,
        }
        if self.gpus is not None:
            summary["gpu"] = self.gpus.summary()
        return summary
