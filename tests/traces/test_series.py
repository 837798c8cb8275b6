"""Each repair and each error of the shared series cleaning, on tiny made-up inputs."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from traces.prices import load_prices
from traces.series import SeriesError, clean_series

FIX = Path(__file__).parent / "fixtures"


def _clean(ts, vals, **kw):
    kw.setdefault("freq", "1h")
    return clean_series(pd.Series(ts), pd.Series(vals), source="mem.csv", name="x", **kw)


def test_repairs_duplicates_nan_gap_order_and_blank_rows():
    s = load_prices(FIX / "repairable.csv")
    r = s.attrs["report"]
    assert (r["duplicates_dropped"], r["blank_rows_dropped"], r["nan_filled"], r["missing_filled"]) == (
        1,
        1,
        1,
        1,
    )
    assert r["reordered"] and r["negative_values"] == 1
    assert s.index.tz is not None and str(s.index.tz) == "UTC" and s.index.freq == pd.Timedelta("1h")
    assert len(s) == 7 and s.isna().sum() == 0
    # 03:00 and 04:00 lie on the line from -4 (02:00) to 60 (05:00)
    np.testing.assert_allclose(s.iloc[3:5].to_numpy(), [-4 + 64 / 3, -4 + 128 / 3])
    assert s.iloc[2] == -4.0  # negative prices are kept


def test_dst_fall_back_resolved_by_file_order():
    s = load_prices(FIX / "dst_fall.csv", tz="Europe/Amsterdam")
    # 01:00 CEST = 23:00 UTC; 02:00 CEST = 00:00 UTC; 02:00 CET = 01:00 UTC; 03:00 CET = 02:00 UTC
    assert s.index[0] == pd.Timestamp("2023-10-28 23:00", tz="UTC")
    assert s.to_numpy().tolist() == [20.0, 21.0, 22.0, 23.0]
    assert s.attrs["report"]["dst_ambiguous_resolved"] == 2


def test_dst_fall_back_resolved_by_flag():
    ts = ["2023-10-29 02:00", "2023-10-29 02:00"]
    s, r = _clean(ts, [2.0, 1.0], tz="Europe/Amsterdam", ambiguous=np.array([False, True]))
    assert s.to_numpy().tolist() == [1.0, 2.0]  # the flagged summer-time hour comes first in UTC
    assert r.dst_ambiguous_resolved == 2


def test_dst_spring_forward_nonexistent_hour_dropped():
    s = load_prices(FIX / "dst_spring.csv", tz="Europe/Amsterdam")
    assert s.attrs["report"]["dst_nonexistent_dropped"] == 1
    assert 11.5 not in s.to_numpy()
    assert len(s) == 4 and s.index.is_monotonic_increasing


def test_unparseable_timestamp_names_file_and_line():
    with pytest.raises(SeriesError, match=r"bad_timestamp\.csv: line 4: cannot parse timestamp"):
        load_prices(FIX / "bad_timestamp.csv")


def test_long_gap_is_an_error():
    with pytest.raises(SeriesError, match=r"long_gap\.csv: line 3: gap of 4 steps"):
        load_prices(FIX / "long_gap.csv")
    s = load_prices(FIX / "long_gap.csv", max_gap_steps=4)
    assert s.attrs["report"]["missing_filled"] == 4


def test_out_of_range_value_is_an_error():
    with pytest.raises(SeriesError, match=r"bad_range\.csv: line 3: .*51000"):
        load_prices(FIX / "bad_range.csv")


def test_conflicting_duplicate_is_an_error():
    with pytest.raises(SeriesError, match=r"line 4: timestamp .* repeats line 3 with another value"):
        load_prices(FIX / "conflicting_duplicate.csv")


def test_non_numeric_value_and_off_grid_time_are_errors():
    with pytest.raises(SeriesError, match="line 3: value 'abc' is not a number"):
        _clean(["2023-01-01 00:00", "2023-01-01 01:00"], ["1", "abc"])
    with pytest.raises(SeriesError, match="off the regular"):
        _clean(["2023-01-01 00:00", "2023-01-01 01:00", "2023-01-01 01:30"], [1, 2, 3])


def test_aware_timestamps_are_converted_and_freq_inferred():
    s, r = clean_series(pd.Series(["2023-01-01T00:00:00+01:00", "2023-01-01T00:15:00+01:00"]),
                        pd.Series([1.0, 2.0]), source="m", name="x")  # fmt: skip
    assert s.index[0] == pd.Timestamp("2022-12-31 23:00", tz="UTC") and r.freq == str(pd.Timedelta("15min"))


def test_datetime_input_of_any_resolution_and_empty_input():
    t = pd.Series(pd.date_range("2023-01-01", periods=3, freq="30min", unit="us"))
    s, r = clean_series(t, pd.Series([1.0, 2.0, 3.0]), source="m", name="x", tz="Europe/Berlin")
    assert s.index[0] == pd.Timestamp("2022-12-31 23:00", tz="UTC") and r.freq == str(pd.Timedelta("30min"))
    with pytest.raises(SeriesError, match="no rows with a timestamp"):
        _clean(["", " "], [1.0, 2.0])
