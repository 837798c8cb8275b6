"""Zeus-like GPU energy windows: `with monitor.window("name") as w:` measures wall time between CUDA-synchronised
edges, energy from the NVML total-energy counter, cross-checked by a background power-sampling thread."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

#: Windows shorter than this are flagged: the NVML energy counter updates only every ~20-100 ms, so a window
#: below about a second reads 0 or a coarse step (cited: ../shared/reference/published-figures.md, section 3).
SHORT_WINDOW_S = 1.0
#: Power sampling period of the background thread (assumption: 50 Hz is fine-grained against 20-100 ms updates).
SAMPLE_INTERVAL_S = 0.02


class NvmlUnavailableError(ValueError):
    """NVML (the nvidia-ml-py package or the driver) cannot be used on this machine."""


@dataclass
class Window:
    """One measured window. Anything not measured is None, never 0."""

    name: str
    duration_s: float | None = None
    energy_j: float | None = None  # NVML total-energy counter delta
    energy_integrated_j: float | None = None  # trapezoid of sampled power
    energy_check_rel: float | None = None  # |counter - integrated| / counter
    short: bool | None = None  # shorter than the counter can resolve (value kept, flagged)
    n_power_samples: int = 0
    temperature_c_start: float | None = None
    temperature_c_end: float | None = None
    sm_clock_mhz_mean: float | None = None
    power_limit_w: float | None = None
    idle_power_w: float | None = None
    ended_at: float | None = None  # time.time() at the end edge

    @property
    def power_mean_w(self) -> float | None:
        """Mean power over the window from the counter."""
        if self.energy_j is None or not self.duration_s:
            return None
        return self.energy_j / self.duration_s

    def net_energy_j(self) -> float | None:
        """Energy above the idle baseline (idle power times window length subtracted)."""
        if self.energy_j is None or self.idle_power_w is None or self.duration_s is None:
            return None
        return self.energy_j - self.idle_power_w * self.duration_s


def trapezoid_j(samples: list[tuple[float, float]]) -> float | None:
    """Energy in J of (time s, power W) samples by the trapezoid rule; None with fewer than two samples."""
    if len(samples) < 2:
        return None
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in itertools.pairwise(samples))


@dataclass
class _Sampler:
    """Background thread sampling (time, power W, SM clock MHz) until stopped."""

    read: Callable[[], tuple[float | None, float | None]]
    interval_s: float
    samples: list[tuple[float, float]] = field(default_factory=list)
    clocks: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while True:
            power, clock = self.read()
            if power is not None:
                self.samples.append((time.perf_counter(), power))
            if clock is not None:
                self.clocks.append(clock)
            if self._stop.wait(self.interval_s):
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        power, _ = self.read()  # a last sample at the closing edge so the integral spans the whole window
        if power is not None:
            self.samples.append((time.perf_counter(), power))


def _load_pynvml():
    try:
        import pynvml
    except ImportError:
        raise NvmlUnavailableError("NVML unavailable: the nvidia-ml-py package is not installed") from None
    return pynvml


class EnergyMonitor:
    """GPU energy windows through NVML on one device; ``sync`` is called at both edges (torch.cuda.synchronize)."""

    def __init__(
        self,
        device_index: int = 0,
        sync: Callable[[], None] | None = None,
        sample_interval_s: float = SAMPLE_INTERVAL_S,
        short_window_s: float = SHORT_WINDOW_S,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.nvml = _load_pynvml()
        try:
            self.nvml.nvmlInit()
            self.handle = self.nvml.nvmlDeviceGetHandleByIndex(device_index)
        except self.nvml.NVMLError as exc:
            raise NvmlUnavailableError(f"NVML unavailable: {exc}") from None
        self.sync = sync or (lambda: None)
        self.sample_interval_s = sample_interval_s
        self.short_window_s = short_window_s
        self.clock, self.sleep = clock, sleep  # injectable so tests can fix window lengths
        self.idle_power_w: float | None = None
        self.power_source = "average"
        self.power_source = self._probe_power_source()

    def gpu_info(self) -> dict[str, object]:
        """GPU name, driver and power limit for the provenance sidecar."""
        name = self.nvml.nvmlDeviceGetName(self.handle)
        driver = self.nvml.nvmlSystemGetDriverVersion()
        return {
            "gpu_name": name.decode() if isinstance(name, bytes) else str(name),
            "driver": driver.decode() if isinstance(driver, bytes) else str(driver),
            "power_limit_w": self.power_limit_w(),
            "power_source": self.power_source,
        }

    def energy_mj(self) -> float:
        """The device's total-energy counter, mJ since the driver loaded."""
        return float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def power_w(self) -> float:
        """Board power in W: the instantaneous field where the GPU has it, else nvmlDeviceGetPowerUsage
        (a ~1 s average on recent GPUs, which smears a window's edges; published-figures.md section 3)."""
        if self.power_source == "instant":
            value = self._instant_power_w()
            if value is not None:
                return value
        return self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0

    def _instant_power_w(self) -> float | None:
        try:
            (field,) = self.nvml.nvmlDeviceGetFieldValues(self.handle, [self.nvml.NVML_FI_DEV_POWER_INSTANT])
        except (self.nvml.NVMLError, AttributeError, TypeError, ValueError):
            return None
        if field.nvmlReturn != self.nvml.NVML_SUCCESS:
            return None
        return field.value.uiVal / 1000.0

    def _probe_power_source(self) -> str:
        """``instant`` where NVML_FI_DEV_POWER_INSTANT answers (Hopper and newer drivers), else ``average``."""
        return "instant" if self._instant_power_w() is not None else "average"

    def power_limit_w(self) -> float | None:
        try:
            return self.nvml.nvmlDeviceGetEnforcedPowerLimit(self.handle) / 1000.0
        except self.nvml.NVMLError:
            return None

    def temperature_c(self) -> float | None:
        try:
            return float(self.nvml.nvmlDeviceGetTemperature(self.handle, self.nvml.NVML_TEMPERATURE_GPU))
        except self.nvml.NVMLError:
            return None

    def sm_clock_mhz(self) -> float | None:
        try:
            return float(self.nvml.nvmlDeviceGetClockInfo(self.handle, self.nvml.NVML_CLOCK_SM))
        except self.nvml.NVMLError:
            return None

    def _sample(self) -> tuple[float | None, float | None]:
        try:
            power = self.power_w()
        except self.nvml.NVMLError:
            power = None  # a missed sample only thins the cross-check; the counter is the measurement
        return power, self.sm_clock_mhz()

    def measure_idle(self, seconds: float = 2.0) -> float | None:
        """Idle power in W from the counter over ``seconds`` with nothing running; kept for later windows
        (None when ``seconds`` is 0: not measured)."""
        self.sync()
        if seconds <= 0:
            return None
        e0, t0 = self.energy_mj(), self.clock()
        self.sleep(seconds)
        e1, t1 = self.energy_mj(), self.clock()
        self.idle_power_w = (e1 - e0) / 1000.0 / (t1 - t0)
        return self.idle_power_w

    @contextmanager
    def window(self, name: str) -> Iterator[Window]:
        """Measure the body as one window; the yielded Window is filled when the block exits."""
        w = Window(name=name, power_limit_w=self.power_limit_w(), idle_power_w=self.idle_power_w)
        self.sync()
        w.temperature_c_start = self.temperature_c()
        sampler = _Sampler(self._sample, self.sample_interval_s)
        sampler.start()
        e0, t0 = self.energy_mj(), self.clock()
        try:
            yield w
        finally:
            self.sync()
            e1, t1 = self.energy_mj(), self.clock()
            sampler.stop()
            self._close(w, e1 - e0, t1 - t0, sampler)

    def _close(self, w: Window, delta_mj: float, duration_s: float, sampler: _Sampler) -> None:
        w.duration_s, w.ended_at = duration_s, time.time()
        w.energy_j = delta_mj / 1000.0
        w.short = duration_s < self.short_window_s or delta_mj <= 0
        w.temperature_c_end = self.temperature_c()
        w.n_power_samples = len(sampler.samples)
        w.energy_integrated_j = trapezoid_j(sampler.samples)
        if w.energy_integrated_j is not None and w.energy_j > 0:
            w.energy_check_rel = abs(w.energy_j - w.energy_integrated_j) / w.energy_j
        if sampler.clocks:
            w.sm_clock_mhz_mean = sum(sampler.clocks) / len(sampler.clocks)

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError:
            pass


class NoEnergyMonitor:
    """Timing-only windows (CPU runs, --allow-no-energy): energy fields stay None, never 0."""

    idle_power_w: float | None = None

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.sync = sync or (lambda: None)

    def gpu_info(self) -> dict[str, object]:
        return {"gpu_name": None, "driver": None, "power_limit_w": None, "power_source": None}

    def measure_idle(self, seconds: float = 0.0) -> None:
        return None

    @contextmanager
    def window(self, name: str) -> Iterator[Window]:
        w = Window(name=name)
        self.sync()
        t0 = time.perf_counter()
        try:
            yield w
        finally:
            self.sync()
            w.duration_s, w.ended_at = time.perf_counter() - t0, time.time()

    def close(self) -> None:
        return None
