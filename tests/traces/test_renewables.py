"""PV and wind from pvlib's bundled TMY3 weather: shape, year mapping, capacity scaling, offline turbines."""

import numpy as np
import pandas as pd
import pytest

from traces.renewables import RenewablesError, load_weather, pv_power, site_renewables, tmy3_path, wind_power


@pytest.fixture(scope="module")
def gso():
    return site_renewables("greensboro-nc", pv_kwp=1000.0, wind_kw=2000.0, year=2023)


def test_site_renewables_shape_and_units(gso):
    assert list(gso.columns) == ["pv_kw", "wind_kw", "temp_air_c"] and len(gso) == 8760
    assert gso.index[0] == pd.Timestamp("2023-01-01", tz="UTC") and gso.index.freq == pd.Timedelta("1h")
    assert not gso.isna().any().any() and (gso[["pv_kw", "wind_kw"]] >= 0).all().all()
    # AC output of a DC/AC 1.2, 96 % inverter stays below 1000 / 1.2 kW
    assert gso["pv_kw"].max() <= 1000.0 / 1.2 + 1e-6
    # the power curve of E-82/2000 peaks at 2050 kW per 2000 kW nameplate
    assert gso["wind_kw"].max() <= 2000.0 * 2050 / 2000 + 1e-6


def test_pv_follows_the_sun(gso):
    pv_by_hour = gso["pv_kw"].groupby(gso.index.hour).mean()
    # Greensboro is UTC-5: solar noon near 17 UTC, night around 5 UTC
    assert pv_by_hour.idxmax() in (16, 17, 18) and pv_by_hour.loc[3:9].max() == 0.0
    june, dec = gso["pv_kw"]["2023-06"].mean(), gso["pv_kw"]["2023-12"].mean()
    assert june > 1.5 * dec
    cf = gso["pv_kw"].mean() / 1000.0
    assert 0.10 < cf < 0.22  # a fixed south-facing system in North Carolina


def test_capacity_scales_linearly():
    a, b = pv_power("greensboro-nc", 10.0, 2023), pv_power("greensboro-nc", 20.0, 2023)
    np.testing.assert_allclose(b.to_numpy(), 2 * a.to_numpy(), rtol=1e-9, atol=1e-9)
    w1, w2 = wind_power("sand-point-ak", 100.0), wind_power("sand-point-ak", 300.0)
    np.testing.assert_allclose(w2.to_numpy(), 3 * w1.to_numpy())
    assert (pv_power("greensboro-nc", 0.0) == 0).all()


def test_windier_site_has_higher_capacity_factor(gso):
    windy = wind_power("sand-point-ak", 2000.0)
    assert windy.mean() / 2000.0 > 2 * gso["wind_kw"].mean() / 2000.0


def test_leap_year_maps_29_february_onto_28():
    w = load_weather("greensboro-nc", 2024)
    assert len(w) == 8784
    feb28 = w.loc["2024-02-28 05:00":"2024-02-29 04:00"].to_numpy()
    feb29 = w.loc["2024-02-29 05:00":"2024-03-01 04:00"].to_numpy()
    np.testing.assert_array_equal(feb28, feb29)
    # the typical year is cyclic: 1 Jan 00:00 UTC (19:00 LST on 31 Dec) takes the 31 Dec evening row
    import pvlib

    raw, _ = pvlib.iotools.read_tmy3(tmy3_path("greensboro-nc"), map_variables=True)
    dec31_20 = raw[(raw["Date (MM/DD/YYYY)"].str.startswith("12/31")) & (raw["Time (HH:MM)"] == "20:00")]
    assert load_weather("greensboro-nc", 2023)["ghi"].iloc[0] == dec31_20["ghi"].iloc[0]
    assert load_weather("greensboro-nc", 2023)["temp_air"].iloc[0] == dec31_20["temp_air"].iloc[0]


def test_turbine_library_is_offline(monkeypatch):
    import requests

    def no_network(*a, **k):
        raise AssertionError("network used")

    monkeypatch.setattr(requests, "get", no_network)
    monkeypatch.setattr(requests.Session, "request", no_network)
    assert wind_power("greensboro-nc", 10.0, turbine="V90/2000", hub_height_m=80.0).mean() > 0


def test_bad_inputs_are_clear_errors():
    with pytest.raises(RenewablesError, match="unknown site 'atlantis'"):
        load_weather("atlantis")
    with pytest.raises(RenewablesError, match="unknown turbine"):
        wind_power("greensboro-nc", 10.0, turbine="NoSuch/1")
    with pytest.raises(RenewablesError, match="pv_kwp must be"):
        pv_power("greensboro-nc", -1.0)
    with pytest.raises(RenewablesError, match="year must be"):
        load_weather("greensboro-nc", 1066)
