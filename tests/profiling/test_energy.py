"""Energy windows against an autospecced pynvml: counter deltas, short windows, idle subtraction, NVML missing."""

from __future__ import annotations

import sys
import time
from unittest import mock

import pynvml
import pytest

from profiling.energy import EnergyMonitor, NoEnergyMonitor, NvmlUnavailableError, Window, trapezoid_j


def fake_nvml(energy_mj=(), power_mw: int = 100_000) -> mock.MagicMock:
    """pynvml with every function autospecced; constants and the error class stay real."""
    nv = mock.create_autospec(pynvml, instance=False)
    nv.NVMLError = pynvml.NVMLError
    nv.NVML_TEMPERATURE_GPU, nv.NVML_CLOCK_SM = pynvml.NVML_TEMPERATURE_GPU, pynvml.NVML_CLOCK_SM
    nv.nvmlDeviceGetTotalEnergyConsumption.side_effect = list(energy_mj)
    nv.nvmlDeviceGetPowerUsage.return_value = power_mw
    nv.nvmlDeviceGetTemperature.return_value = 45
    nv.nvmlDeviceGetClockInfo.return_value = 1980
    nv.nvmlDeviceGetEnforcedPowerLimit.return_value = 700_000
    nv.nvmlDeviceGetName.return_value = "NVIDIA H100 80GB HBM3"
    nv.nvmlSystemGetDriverVersion.return_value = "580.159.04"
    nv.NVML_FI_DEV_POWER_INSTANT, nv.NVML_SUCCESS = pynvml.NVML_FI_DEV_POWER_INSTANT, pynvml.NVML_SUCCESS
    nv.nvmlDeviceGetFieldValues.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    return nv


def monitor_with(nv, clock_times=None, **kw) -> EnergyMonitor:
    clock = mock.Mock(side_effect=list(clock_times)) if clock_times is not None else time.perf_counter
    with mock.patch.dict(sys.modules, {"pynvml": nv}):
        return EnergyMonitor(0, clock=clock, sleep=lambda s: None, **kw)


def test_window_energy_is_the_counter_delta_in_joules():
    nv = fake_nvml(energy_mj=[1_000_000, 1_300_000])
    mon = monitor_with(nv, clock_times=[10.0, 15.0])
    with mon.window("w") as w:
        pass
    assert w.energy_j == pytest.approx(300.0)
    assert w.duration_s == pytest.approx(5.0)
    assert w.power_mean_w == pytest.approx(60.0)
    assert w.short is False
    assert (w.temperature_c_start, w.temperature_c_end, w.power_limit_w) == (45.0, 45.0, 700.0)
    assert w.sm_clock_mhz_mean == pytest.approx(1980.0)
    nv.nvmlDeviceGetHandleByIndex.assert_called_once_with(0)


def test_short_window_is_flagged_and_its_value_kept():
    mon = monitor_with(fake_nvml(energy_mj=[500, 40_500]), clock_times=[0.0, 0.2])
    with mon.window("short") as w:
        pass
    assert w.short is True
    assert w.energy_j == pytest.approx(40.0)


def test_window_where_the_counter_did_not_move_is_flagged():
    mon = monitor_with(fake_nvml(energy_mj=[7_000, 7_000]), clock_times=[0.0, 3.0])
    with mon.window("frozen") as w:
        pass
    assert w.short is True and w.energy_j == 0.0


def test_idle_power_is_measured_and_subtracted():
    nv = fake_nvml(energy_mj=[0, 150_000, 1_000_000, 1_400_000])
    mon = monitor_with(nv, clock_times=[0.0, 2.0, 100.0, 104.0])
    assert mon.measure_idle(2.0) == pytest.approx(75.0)
    with mon.window("busy") as w:
        pass
    assert w.idle_power_w == pytest.approx(75.0)
    assert w.net_energy_j() == pytest.approx(400.0 - 75.0 * 4.0)


def test_integrated_power_cross_checks_the_counter():
    """A counter that integrates a constant 200 W; the sampled power is 200 W too, so they must agree."""
    nv = fake_nvml(power_mw=200_000)
    nv.nvmlDeviceGetTotalEnergyConsumption.side_effect = lambda h: time.perf_counter() * 200_000.0
    with mock.patch.dict(sys.modules, {"pynvml": nv}):
        mon = EnergyMonitor(0, sample_interval_s=0.01, short_window_s=0.05)
    with mon.window("steady") as w:
        time.sleep(0.3)
    assert w.energy_j == pytest.approx(200.0 * w.duration_s, rel=1e-2)
    assert w.n_power_samples >= 5
    assert w.energy_check_rel is not None and w.energy_check_rel < 0.1


def test_sync_is_called_at_both_edges():
    sync = mock.Mock()
    nv = fake_nvml(energy_mj=[0, 10_000])
    with mock.patch.dict(sys.modules, {"pynvml": nv}):
        mon = EnergyMonitor(0, sync=sync, clock=mock.Mock(side_effect=[0.0, 2.0]))
    with mon.window("w"):
        assert sync.call_count == 1
    assert sync.call_count == 2


def test_missing_package_is_a_clear_error():
    with (
        mock.patch.dict(sys.modules, {"pynvml": None}),
        pytest.raises(NvmlUnavailableError, match="nvidia-ml-py"),
    ):
        EnergyMonitor(0)


def test_missing_driver_is_a_clear_error():
    nv = fake_nvml()
    nv.nvmlInit.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    with pytest.raises(NvmlUnavailableError, match="NVML unavailable"):
        monitor_with(nv)


def test_gpu_info_for_the_sidecar():
    info = monitor_with(fake_nvml()).gpu_info()
    assert info == {
        "gpu_name": "NVIDIA H100 80GB HBM3",
        "driver": "580.159.04",
        "power_limit_w": 700.0,
        "power_source": "average",
    }


def test_instant_power_field_is_preferred_where_it_answers():
    nv = fake_nvml(power_mw=100_000)
    field = pynvml.c_nvmlFieldValue_t()
    field.nvmlReturn, field.value.uiVal = pynvml.NVML_SUCCESS, 250_000
    nv.nvmlDeviceGetFieldValues.side_effect = None
    nv.nvmlDeviceGetFieldValues.return_value = [field]
    mon = monitor_with(nv)
    assert mon.power_source == "instant" and mon.power_w() == pytest.approx(250.0)
    field.nvmlReturn = (
        pynvml.NVML_ERROR_NOT_SUPPORTED
    )  # a field that stops answering falls back to the average
    assert mon.power_w() == pytest.approx(100.0)


def test_no_energy_monitor_leaves_energy_empty_not_zero():
    with NoEnergyMonitor().window("cpu") as w:
        time.sleep(0.01)
    assert w.duration_s is not None and w.duration_s > 0
    assert w.energy_j is None and w.power_mean_w is None and w.net_energy_j() is None and w.short is None


def test_trapezoid():
    assert trapezoid_j([(0.0, 100.0), (1.0, 100.0), (3.0, 200.0)]) == pytest.approx(100.0 + 300.0)
    assert trapezoid_j([(0.0, 1.0)]) is None
    assert Window("x").net_energy_j() is None
