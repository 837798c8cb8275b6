"""Merging traces from several device calls: new points added, committed rows untouched, sidecars united."""

from __future__ import annotations

import json
import shutil
import tarfile

import pandas as pd
import pytest

from profiling.merge import main, merge
from traces.data_paths import REPO_ROOT
from traces.profile_schema import KEY_COLUMNS, read_profile

H100 = REPO_ROOT / "traces" / "profiles" / "h100"
pytestmark = pytest.mark.skipif(not H100.is_dir(), reason="no committed H100 traces")


def _copy(dst, model="sd-2.1", rows=None):
    (dst / "h100").mkdir(parents=True)
    frame = pd.read_csv(H100 / f"{model}.csv")
    (frame if rows is None else frame.iloc[rows]).to_csv(dst / "h100" / f"{model}.csv", index=False)
    shutil.copy(H100 / f"{model}.json", dst / "h100" / f"{model}.json")
    return dst / "h100" / f"{model}.csv"


def _pack(folder, archive):
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder / "h100", arcname="h100")
    return archive


def test_two_calls_each_from_the_committed_rows_merge_into_one_trace(tmp_path):
    dest = _copy(tmp_path / "dest", rows=range(0, 30))
    committed = (tmp_path / "dest" / "h100" / "sd-2.1.csv").read_text()
    a = _copy(tmp_path / "a", rows=[*range(0, 30), *range(30, 40)])  # call 1: committed + 10 new
    _copy(tmp_path / "b", rows=[*range(0, 30), *range(40, 50)])  # call 2: committed + 10 other new
    frame = pd.read_csv(a)
    frame.loc[:29, "latency_batch_mean_s"] *= 1 + 1e-15  # a rewrite elsewhere: last digits differ
    frame.to_csv(a, index=False)
    sidecar = json.loads((tmp_path / "b" / "h100" / "sd-2.1.json").read_text())
    sidecar["runs"].append({"date": "2099-01-01T00:00:00+00:00", "command": "call 2"})
    sidecar["date"], sidecar["notes"] = "2099-01-01T00:00:00+00:00", ["call 2's note"]
    (tmp_path / "b" / "h100" / "sd-2.1.json").write_text(json.dumps(sidecar))
    [result] = merge([_pack(tmp_path / "a", tmp_path / "a.tar.gz"), tmp_path / "b"], tmp_path / "dest")
    assert (result.added, result.kept) == (20, 30)
    merged = read_profile(dest)
    assert len(merged) == 50 and not merged.duplicated(list(KEY_COLUMNS)).any()
    assert dest.read_text().startswith(committed)  # the committed rows, byte for byte, come first
    meta = json.loads((tmp_path / "dest" / "h100" / "sd-2.1.json").read_text())
    assert meta["date"].startswith("2099") and meta["notes"].count("call 2's note") == 1
    assert len(meta["notes"]) == len(set(meta["notes"]))  # the committed notes, once
    assert [r["command"] for r in meta["runs"]][-1] == "call 2"
    assert merge([tmp_path / "b"], tmp_path / "dest")[0].added == 0  # merging again changes nothing


def test_a_source_measured_on_another_gpu_is_a_one_line_error(tmp_path, capsys):
    _copy(tmp_path / "dest", rows=range(0, 10))
    _copy(tmp_path / "a", rows=range(10, 20))
    sidecar = json.loads((tmp_path / "a" / "h100" / "sd-2.1.json").read_text())
    sidecar["gpu_name"] = "NVIDIA H200"
    (tmp_path / "a" / "h100" / "sd-2.1.json").write_text(json.dumps(sidecar))
    assert main([str(tmp_path / "a"), "--into", str(tmp_path / "dest")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "gpu_name" in err and err.count("\n") == 1
    assert len(read_profile(tmp_path / "dest" / "h100" / "sd-2.1.csv")) == 10  # nothing written


def test_bad_sources_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "junk.tar.gz").write_text("not an archive")
    (tmp_path / "empty").mkdir()
    for source in ("absent.tar.gz", "junk.tar.gz", "empty"):
        assert main([str(tmp_path / source), "--into", str(tmp_path / "dest")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1


def test_a_point_added_by_two_sources_comes_from_its_later_measurement(tmp_path):
    _copy(tmp_path / "dest", rows=range(0, 10))
    early = _copy(tmp_path / "a", rows=[10, 11])
    late = _copy(tmp_path / "b", rows=[10])
    frame = pd.read_csv(early)  # a: point 10 early, point 11 later than b's copy of point 10
    frame.loc[0, ["measured_at", "latency_batch_mean_s"]] = ["2026-01-01T00:00:00+00:00", 111.0]
    frame.loc[1, "measured_at"] = "2026-12-31T00:00:00+00:00"
    frame.to_csv(early, index=False)
    frame = pd.read_csv(late)
    frame.loc[0, ["measured_at", "latency_batch_mean_s"]] = ["2026-06-01T00:00:00+00:00", 222.0]
    frame.to_csv(late, index=False)
    [result] = merge([tmp_path / "a", tmp_path / "b"], tmp_path / "dest")
    assert (result.added, result.kept) == (2, 10)
    assert 222.0 in set(result.frame["latency_batch_mean_s"]) and 111.0 not in set(
        result.frame["latency_batch_mean_s"]
    )


def test_a_source_without_a_sidecar_or_with_a_broken_one_is_refused(tmp_path, capsys):
    _copy(tmp_path / "dest", rows=range(0, 10))
    _copy(tmp_path / "a", rows=range(10, 20))
    sidecar = tmp_path / "a" / "h100" / "sd-2.1.json"
    sidecar.unlink()
    assert main([str(tmp_path / "a"), "--into", str(tmp_path / "dest")]) == 2
    assert "no sidecar beside" in capsys.readouterr().err
    for text in ("{not json", json.dumps({"gpu_name": "x", "notes": "not a list"})):
        sidecar.write_text(text)
        assert main([str(tmp_path / "a"), "--into", str(tmp_path / "dest")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1
    assert len(read_profile(tmp_path / "dest" / "h100" / "sd-2.1.csv")) == 10


def test_a_failed_write_leaves_every_destination_file_as_it_was(tmp_path, monkeypatch):
    import profiling.merge as merge_module

    _copy(tmp_path / "dest", rows=range(0, 10))
    before = {p.name: p.read_bytes() for p in (tmp_path / "dest" / "h100").iterdir()}
    _copy(tmp_path / "a", rows=range(10, 20))

    def fail(path, obj):
        raise OSError("disk full")

    monkeypatch.setattr(merge_module, "write_json_atomic", fail)  # the CSV is staged, then the sidecar fails
    with pytest.raises(OSError):
        merge([tmp_path / "a"], tmp_path / "dest")
    assert {p.name: p.read_bytes() for p in (tmp_path / "dest" / "h100").iterdir()} == before  # no leftovers
