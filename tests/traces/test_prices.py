"""Price loaders: the embedded ev2gym NL series, each export format, and per-site derivation."""

from pathlib import Path

import pandas as pd
import pytest

from traces import prices
from traces.prices import PriceFormatError, detect_format, load_price_nodes, load_prices, site_prices

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def nl():
    return load_prices()


def test_embedded_nl_series_is_cleaned(nl):
    r = nl.attrs["report"]
    assert nl.name == "price_eur_per_mwh" and nl.attrs["currency"] == "EUR"
    assert nl.index[0] == pd.Timestamp("2015-01-01", tz="UTC") and nl.index.freq == pd.Timedelta("1h")
    assert nl.index.is_unique and nl.index.is_monotonic_increasing and not nl.isna().any()
    assert len(nl) == (nl.index[-1] - nl.index[0]) / pd.Timedelta("1h") + 1
    # the two joined parts overlap (2022-12-31 23:00 .. 2023-09-30 23:00) and one separator row has no time
    assert r["duplicates_dropped"] > 6000 and r["blank_rows_dropped"] == 1
    assert (nl < 0).sum() > 100  # negative prices are real and kept


def test_ev2gym_found_without_import():
    import sys

    sys.modules.pop("ev2gym", None)
    path = prices.ev2gym_prices_path()
    assert path.name == prices.NL_FILE and "ev2gym" not in sys.modules


def test_window_bounds(nl):
    s = load_prices(start="2024-01-01", end="2024-01-02")
    assert len(s) == 24 and s.index[0] == pd.Timestamp("2024-01-01", tz="UTC")
    with pytest.raises(PriceFormatError, match="no prices in"):
        load_prices(start="2030-01-01")
    with pytest.raises(PriceFormatError, match="as a time bound"):
        load_prices(start="next tuesday")


@pytest.mark.parametrize(
    ("name", "fmt", "nodes", "first_utc", "currency"),
    [
        ("prices_tidy.csv", "tidy", ["price"], "2023-03-26 00:00", "EUR"),
        ("prices_ercot.csv", "ercot", ["HB_HOUSTON", "HB_NORTH"], "2023-11-05 05:00", "USD"),
        ("prices_pjm.csv", "pjm", ["AECO", "BGE"], "2023-01-01 05:00", "USD"),
        ("prices_caiso.csv", "caiso", ["TH_NP15_GEN-APND", "TH_SP15_GEN-APND"], "2023-01-01 08:00", "USD"),
        ("prices_entsoe.csv", "entsoe", ["NL"], "2023-10-28 22:00", "EUR"),
    ],
)
def test_each_export_format(name, fmt, nodes, first_utc, currency):
    assert detect_format(pd.read_csv(FIX / name, nrows=0).columns) == fmt
    frame = load_price_nodes(FIX / name)
    assert list(frame.columns) == nodes and frame.attrs["currency"] == currency
    assert frame.index[0] == pd.Timestamp(first_utc, tz="UTC") and frame.index.freq == pd.Timedelta("1h")
    assert not frame.isna().any().any()


def test_ercot_repeated_hour_is_standard_time():
    s = load_prices(FIX / "prices_ercot.csv", node="HB_NORTH")
    assert s.loc["2023-11-05 06:00+00:00"] == 21.4 and s.loc["2023-11-05 07:00+00:00"] == 20.9
    assert s.min() == -2.5


def test_caiso_keeps_only_lmp_rows_and_entsoe_fills_dash():
    assert load_prices(FIX / "prices_caiso.csv", node="TH_NP15_GEN-APND").iloc[0] == 151.2
    e = load_prices(FIX / "prices_entsoe.csv")
    assert e.attrs["report"]["nan_filled"] == 1 and e.iloc[4] == pytest.approx(76.75)


def test_entsoe_newer_export_with_quarter_hours():
    s = load_prices(FIX / "prices_entsoe_new.csv")
    assert s.attrs["node"] == "NL" and s.attrs["currency"] == "EUR" and s.index.freq == pd.Timedelta("15min")
    assert s.index[0] == pd.Timestamp("2025-09-30 22:00", tz="UTC") and s.iloc[-1] == -1.30


def test_format_and_node_errors():
    with pytest.raises(PriceFormatError, match="unknown price format"):
        load_prices(FIX / "unknown_format.csv")
    with pytest.raises(PriceFormatError, match="holds 2 nodes"):
        load_prices(FIX / "prices_pjm.csv")
    with pytest.raises(PriceFormatError, match="no node 'XYZ'"):
        load_prices(FIX / "prices_pjm.csv", node="XYZ")
    with pytest.raises(PriceFormatError, match="neither"):
        load_prices("no/such/file.csv")


def test_site_prices_shift_single_zone_by_timezone(nl):
    tz = {"ams": "Europe/Amsterdam", "nyc": "America/New_York"}
    df = site_prices(["ams", "nyc"], timezones=tz, start="2024-01-10", end="2024-01-11")
    # New York (UTC-5) sees Amsterdam's (UTC+1) local-time shape 6 hours later in UTC
    assert df["nyc"].loc["2024-01-10 12:00+00:00"] == nl.loc["2024-01-10 06:00+00:00"]
    assert df["ams"].equals(nl.loc["2024-01-10":"2024-01-10 23:00"].rename("ams"))
    assert "shifted by 0 days 06:00:00" in df.attrs["derivation"]["nyc"]


def test_site_prices_same_series_and_locational_nodes():
    same = site_prices(["a", "b"], start="2024-01-01", end="2024-01-02")
    assert same["a"].equals(same["b"].rename("a")) and "identical" in same.attrs["derivation"]["a"]
    loc = site_prices(["dc1", "dc2"], FIX / "prices_pjm.csv", nodes={"dc1": "AECO", "dc2": "BGE"})
    assert loc["dc2"].iloc[0] == 24.02 and "real locational" in loc.attrs["derivation"]["dc2"]
    with pytest.raises(PriceFormatError, match="no time zone for site 'c'"):
        site_prices(["c"], timezones={"a": "UTC"})
