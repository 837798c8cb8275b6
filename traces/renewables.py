"""On-site PV and wind power per data centre, from real measured weather (NREL TMY3 files bundled with
pvlib) through pvlib's PVWatts models and a windpowerlib turbine power curve, scaled to a capacity in kW.

API (hourly series on a tz-aware UTC ``DatetimeIndex`` covering one calendar year in UTC; each value is
the mean over the hour starting at its label):

- ``SITES`` — built-in site names -> TMY3 file in pvlib's ``data`` folder; any TMY3 path works too.
- ``load_weather(site="greensboro-nc", year=2023) -> pd.DataFrame[ghi, dni, dhi, temp_air, wind_speed,
  pressure]`` (W/m², °C, m/s at 10 m, mbar); ``attrs["meta"]`` holds the station metadata.
- ``pv_power(site, kwp, year=2023, *, tilt_deg=20, azimuth_deg=180, gamma_pdc=-0.0047, dc_ac_ratio=1.2,
  inverter_eff=0.96) -> pd.Series "pv_kw"`` — AC power of a fixed PVWatts system of ``kwp`` DC.
- ``wind_power(site, kw, year=2023, *, turbine="E-82/2000", hub_height_m=98, hellman_exponent=1/7)
  -> pd.Series "wind_kw"`` — a wind farm of nameplate ``kw`` made of that turbine type.
- ``site_renewables(site, pv_kwp, wind_kw, year=2023) -> pd.DataFrame[pv_kw, wind_kw, temp_air_c]``.

Typical year onto a target year: a TMY3 file stitches months from different years in local standard time
(LST, no DST) with hour-ending labels. Each UTC hour of ``year`` takes the TMY row of the same (month, day,
hour-beginning) in the station's LST, so 1 January 00:00 UTC in the US takes the typical 31 December evening
(the typical year is treated as cyclic), and 29 February (leap years) repeats 28 February. Irradiance is an
hourly mean, so the sun position is taken at the middle of each hour.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pandas as pd

from traces.series import SeriesError, check_values

#: Built-in sites: the TMY3 files pvlib ships (NREL TMY3, 1991-2005 typical months).
SITES: dict[str, str] = {"greensboro-nc": "723170TYA.CSV", "sand-point-ak": "703165TY.csv"}

#: Assumption: physical plausibility bounds for the weather columns (unit check, not climate limits).
WEATHER_RANGES: dict[str, tuple[float, float]] = {
    "ghi": (0.0, 1500.0),
    "dni": (0.0, 1500.0),
    "dhi": (0.0, 1000.0),
    "temp_air": (-70.0, 60.0),
    "wind_speed": (0.0, 75.0),
    "pressure": (500.0, 1100.0),
}

#: TMY3 wind speed is measured at the standard 10 m anemometer height of the ISD stations.
TMY3_WIND_HEIGHT_M = 10.0


class RenewablesError(SeriesError):
    """Bad site, capacity, year or turbine (the message names which)."""


def tmy3_path(site: str | Path) -> Path:
    """A built-in site's TMY3 file in pvlib's package folder, or the given TMY3 path."""
    import pvlib  # deferred: pvlib is heavy and only needed here

    name = SITES.get(str(site))
    path = Path(os.path.dirname(pvlib.__file__)) / "data" / name if name else Path(site)
    if not path.is_file():
        raise RenewablesError(f"unknown site {str(site)!r}: not one of {sorted(SITES)} nor a TMY3 file")
    return path


@functools.lru_cache(maxsize=8)
def _read_tmy3(path: Path) -> tuple[pd.DataFrame, dict]:
    import pvlib

    try:
        data, meta = pvlib.iotools.read_tmy3(str(path), map_variables=True)
    except Exception as exc:  # pvlib raises several types for a malformed file
        raise RenewablesError(f"{path}: not a readable TMY3 file ({exc.__class__.__name__}: {exc})") from None
    if len(data) != 8760:
        raise RenewablesError(f"{path}: a TMY3 file has 8760 hourly rows, this one has {len(data)}")
    lines = np.arange(len(data)) + 3  # line 1 is station metadata, line 2 the header
    for col, rng in WEATHER_RANGES.items():
        check_values(data[col].to_numpy(float), lines, str(path), col, rng, allow_nan=False)
    # Key rows by their own date and hour-ending text ("24:00" is hour 23 of that date): the index pvlib
    # builds rolls a leap-year 28 Feb 24:00 onto another day.
    date = pd.to_datetime(data["Date (MM/DD/YYYY)"], format="%m/%d/%Y")
    hour = data["Time (HH:MM)"].astype(str).str.slice(0, 2).astype(int) - 1
    key = pd.Index(date.dt.month * 10000 + date.dt.day * 100 + hour)
    table = data[list(WEATHER_RANGES)].set_axis(key)
    if not table.index.is_unique:
        raise RenewablesError(f"{path}: a (month, day, hour) appears twice; not a typical-year file")
    return table, meta


def _check_year(year: int) -> int:
    if not isinstance(year, (int, np.integer)) or not 1900 <= int(year) <= 2200:
        raise RenewablesError(f"year must be an integer in 1900..2200, got {year!r}")
    return int(year)


def load_weather(site: str | Path = "greensboro-nc", year: int = 2023) -> pd.DataFrame:
    """The typical-year weather of a site mapped onto the UTC hours of ``year`` (see module docstring)."""
    year = _check_year(year)
    table, meta = _read_tmy3(tmy3_path(site))
    utc = pd.date_range(f"{year}-01-01", f"{year + 1}-01-01", freq="h", tz="UTC", inclusive="left")
    lst = utc.tz_localize(None) + pd.Timedelta(hours=float(meta["TZ"]))  # TMY3 uses fixed LST
    day = np.where((lst.month == 2) & (lst.day == 29), 28, lst.day)
    weather = table.reindex(lst.month * 10000 + day * 100 + lst.hour).set_axis(utc)
    if weather.isna().any().any():
        raise RenewablesError(f"{tmy3_path(site)}: typical year misses some (month, day, hour)")
    weather.index.freq = "h"
    weather.attrs = {"meta": dict(meta), "source": str(tmy3_path(site)), "year_mapping": "typical year onto "
                     f"{year} by (month, day, LST hour); 29 Feb repeats 28 Feb"}  # fmt: skip
    return weather


def _check_capacity(value: float, name: str) -> float:
    if not np.isfinite(value) or value < 0:
        raise RenewablesError(f"{name} must be a finite capacity >= 0 kW, got {value!r}")
    return float(value)


def pv_power(
    site: str | Path,
    kwp: float,
    year: int = 2023,
    *,
    tilt_deg: float = 20.0,
    azimuth_deg: float = 180.0,
    gamma_pdc: float = -0.0047,
    dc_ac_ratio: float = 1.2,
    inverter_eff: float = 0.96,
) -> pd.Series:
    """AC output (kW) of a fixed, open-rack PVWatts system of ``kwp`` kW DC at the site.

    Assumptions (PVWatts v5 defaults, Dobos, NREL/TP-6A20-62641, 2014): tilt 20°, facing south (180°),
    standard module -0.47 %/°C, DC/AC 1.2, inverter 96 % nominal, system losses 14.08 % (pvlib's
    ``pvwatts_losses`` defaults); SAPM open-rack glass/polymer cell temperature; transposition, AOI and
    clear-sky models are pvlib ``ModelChain.with_pvwatts`` defaults."""
    from pvlib import location, modelchain, pvsystem
    from pvlib.temperature import TEMPERATURE_MODEL_PARAMETERS

    kwp = _check_capacity(kwp, "pv_kwp")
    weather = load_weather(site, year)
    meta = weather.attrs["meta"]
    if kwp == 0:
        return pd.Series(0.0, index=weather.index, name="pv_kw")
    system = pvsystem.PVSystem(
        surface_tilt=tilt_deg, surface_azimuth=azimuth_deg,
        module_parameters={"pdc0": kwp * 1000.0, "gamma_pdc": gamma_pdc},
        inverter_parameters={"pdc0": kwp * 1000.0 / dc_ac_ratio, "eta_inv_nom": inverter_eff},
        temperature_model_parameters=TEMPERATURE_MODEL_PARAMETERS["sapm"]["open_rack_glass_polymer"],
    )  # fmt: skip
    site_loc = location.Location(meta["latitude"], meta["longitude"], tz="UTC", altitude=meta["altitude"])
    mc = modelchain.ModelChain.with_pvwatts(system, site_loc)
    mid = weather[["ghi", "dni", "dhi", "temp_air", "wind_speed"]].set_axis(
        weather.index + pd.Timedelta("30min")
    )
    mc.run_model(mid)
    ac = np.clip(np.asarray(mc.results.ac, dtype=float) / 1000.0, 0.0, None)  # night: inverter off, not < 0
    out = pd.Series(np.nan_to_num(ac), index=weather.index, name="pv_kw")
    out.attrs = {"source": weather.attrs["source"], "kwp_dc": kwp, "model": "pvlib ModelChain.with_pvwatts",
                 "tilt_deg": tilt_deg, "azimuth_deg": azimuth_deg}  # fmt: skip
    return out


def _turbine(turbine: str, hub_height_m: float):
    from windpowerlib import WindTurbine, get_turbine_types

    known = get_turbine_types(turbine_library="local", print_out=False)  # windpowerlib's bundled oedb CSV
    names = set(known.loc[known["has_power_curve"], "turbine_type"])
    if turbine not in names:
        raise RenewablesError(f"unknown turbine {turbine!r}: not in windpowerlib's bundled library")
    return WindTurbine(turbine_type=turbine, hub_height=hub_height_m)


def wind_power(
    site: str | Path,
    kw: float,
    year: int = 2023,
    *,
    turbine: str = "E-82/2000",
    hub_height_m: float = 98.0,
    hellman_exponent: float = 1 / 7,
) -> pd.Series:
    """Output (kW) of a wind farm of nameplate ``kw`` made of ``turbine`` at the site.

    Assumptions: the 10 m wind speed is extrapolated to the hub with the Hellman power law, exponent 1/7
    (open flat terrain); the hourly speed goes through the manufacturer power curve from windpowerlib's
    bundled library (no density correction, no wake or availability losses); output scales linearly to
    ``kw``. Default turbine Enercon E-82/2000 (2 MW) at 98 m, an offered hub height of that type. The
    manufacturer curve peaks at 2050 kW, so output may exceed the nameplate by 2.5 %."""
    from windpowerlib import power_output, wind_speed

    kw = _check_capacity(kw, "wind_kw")
    if not 0.0 < hellman_exponent < 1.0 or hub_height_m <= 0:
        raise RenewablesError("hub_height_m must be > 0 and hellman_exponent in (0, 1)")
    weather = load_weather(site, year)
    wt = _turbine(turbine, hub_height_m)
    v_hub = wind_speed.hellman(weather["wind_speed"], TMY3_WIND_HEIGHT_M, hub_height_m,
                               hellman_exponent=hellman_exponent)  # fmt: skip
    p = power_output.power_curve(v_hub, wt.power_curve["wind_speed"], wt.power_curve["value"])
    out = pd.Series(
        kw * np.asarray(p, dtype=float) / float(wt.nominal_power), index=weather.index, name="wind_kw"
    )
    out.attrs = {"source": weather.attrs["source"], "kw": kw, "turbine": turbine, "hub_height_m": hub_height_m,
                 "hellman_exponent": hellman_exponent}  # fmt: skip
    return out


def site_renewables(site: str | Path, pv_kwp: float, wind_kw: float, year: int = 2023) -> pd.DataFrame:
    """PV and wind output (kW) and air temperature (°C, for cooling models) of one site for ``year``."""
    frame = pd.DataFrame(
        {"pv_kw": pv_power(site, pv_kwp, year), "wind_kw": wind_power(site, wind_kw, year),
         "temp_air_c": load_weather(site, year)["temp_air"]}
    )  # fmt: skip
    frame.attrs = {"site": str(site), "pv_kwp": pv_kwp, "wind_kw": wind_kw, "year": year}
    return frame
