"""Model cards: the committed cards load and behave physically; bad card files fail with a named field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from twin import cited
from twin.cards import CARDS_DIR, CardError, card_filename, find_card, load_card, load_cards

STEPS = np.arange(1, 101)
EXPECTED = {"sd-1.5", "sd-2.1", "sdxl", "sd3.5-medium"}
REL_TOL = 1e-4  # cards store 6 significant digits


@pytest.fixture(scope="module")
def cards():
    return load_cards(CARDS_DIR)


def test_committed_cards_cover_the_four_models(cards):
    assert {model for (_, model, mode) in cards if mode == "eager"} >= EXPECTED


def test_quality_is_monotone_in_unit_interval(cards):
    for card in cards.values():
        q = card.quality(STEPS)
        assert np.all((q >= 0) & (q <= 1)), card.key
        assert np.all(np.diff(q) >= -1e-12), card.key
        assert q[-1] > 0.9, card.key  # saturated by 100 steps: every source saturates well before


def test_cost_positive_increasing_in_steps_and_batch_amortises(cards):
    for card in cards.values():
        for b in card.batch_sizes:
            lat, en = card.batch_latency_s(STEPS, b), card.batch_energy_j(STEPS, b)
            assert np.all(lat > 0) and np.all(en > 0), card.key
            assert np.all(np.diff(lat) > 0) and np.all(np.diff(en) > 0), card.key
        # per image, a bigger batch never costs more (the batch share beta is <= 1)
        one, big = card.image_energy_j(30, 1), card.image_energy_j(30, card.max_batch)
        assert big <= one, card.key


def test_vectorised_over_arrays(cards):
    card = next(iter(cards.values()))
    out = card.batch_latency_s(np.array([[10], [20]]), np.array([1, 2, 4]))
    assert out.shape == (2, 3)
    assert out[1, 0] == pytest.approx(float(card.batch_latency_s(20, 1)))


@pytest.mark.parametrize("model", [m for m, c in cited.COSTS.items() if len(c.steps) >= 3])
def test_cited_cards_reproduce_published_figures_within_fit_error(cards, model):
    cost = cited.COSTS[model]
    card = cards[(cost.gpu, model, "eager")]
    for attr, fn, block in (
        ("latency_image_s", card.image_latency_s, "latency"),
        ("energy_image_j", card.image_energy_j, "energy"),
    ):
        pub = np.array(getattr(cost, attr))
        err = 100 * np.abs(fn(np.array(cost.steps), 1) - pub) / pub
        allowed = card.fit[block]["in_sample_b1"]["max_abs_pct"] + 100 * REL_TOL
        assert np.all(err <= allowed), (model, attr, err, allowed)
        assert allowed < 2.0  # the affine form fits the published points to within 2 %
        big = getattr(cost, f"big_batch_{attr}")
        big_err = 100 * abs(float(fn(cost.big_batch_steps, cost.big_batch)) - big) / big
        assert big_err <= abs(card.fit[block]["big_batch_pct"]) + 100 * REL_TOL


def test_single_point_card_reproduces_its_point_and_says_so(cards):
    cost = cited.COSTS["sd3.5-medium"]
    card = cards[(cost.gpu, "sd3.5-medium", "eager")]
    assert card.gpu == "h100-cited" and card.basis == "cited"
    assert float(card.image_latency_s(28)) == pytest.approx(cost.latency_image_s[0], rel=REL_TOL)
    assert float(card.image_energy_j(28)) == pytest.approx(cost.energy_image_j[0], rel=REL_TOL)
    assert any(a.startswith("ASSUMED SPLIT") for a in card.assumptions)
    assert card.fit["latency_mape"] is None


def test_quality_form_choice_is_recorded_with_comparison(cards):
    for card in cards.values():
        extra = card.quality_curve.extra
        assert set(extra["comparison"]) == {"sigmoid", "saturating-exp", "power-law"}
        loo = {k: v["loo_rmse"] for k, v in extra["comparison"].items()}
        # the chosen form is the best by LOO, or the paper's sigmoid within 5 % of the best
        assert loo[card.quality_curve.form] <= min(loo.values()) * 1.05 + 1e-12


def test_find_card_prefers_measured_over_cited(tmp_path, cards):
    src = CARDS_DIR / card_filename("a100-sxm4-40gb", "sd-1.5", "eager")
    data = json.loads(src.read_text())
    (tmp_path / src.name).write_text(json.dumps(data))
    data.update(gpu="z-measured-gpu", basis="measured")
    (tmp_path / card_filename("z-measured-gpu", "sd-1.5", "eager")).write_text(json.dumps(data))
    assert find_card("sd-1.5", directory=tmp_path).gpu == "z-measured-gpu"
    assert find_card("sd-1.5", gpu="a100-sxm4-40gb", directory=tmp_path).basis == "cited"
    assert find_card("sd-1.5").key in cards
    with pytest.raises(CardError, match="no model card for model='nope'"):
        find_card("nope", directory=tmp_path)


@pytest.mark.parametrize("name", ["tiny", "default"])
def test_bundled_scenarios_run_on_the_measured_h100_cards(name):
    """The scenarios name no GPU, so ``find_card`` takes the first measured GPU by name: a new measured GPU that
    sorts before ``h100`` would move every scenario onto it unnoticed (the H200's cards sort after)."""
    from twin.scenario import load_scenario

    for dc in load_scenario(name).datacenters:
        card = find_card(dc.model, gpu=dc.gpu, mode=dc.mode)
        assert (card.gpu, card.basis) == ("h100", "measured"), dc.name


def _mutations():
    def drop(key):
        return lambda d: d.pop(key)

    def setter(path, value):
        def apply(d):
            *head, last = path
            for k in head:
                d = d[k]
            d[last] = value

        return apply

    return {
        "missing gpu": (drop("gpu"), "gpu"),
        "bad basis": (setter(["basis"], "guessed"), "basis"),
        "negative cost": (setter(["latency_s", "fixed"], [-1.0, 0.1]), "latency_s.fixed"),
        "short pair": (setter(["energy_j", "per_step"], [1.0]), "energy_j.per_step"),
        "nan cost": (setter(["energy_j", "fixed"], [float("nan"), 1.0]), "energy_j.fixed"),
        "bad form": (setter(["quality", "form"], "cubic"), "quality.form"),
        "q_max > 1": (setter(["quality", "params", "q_max"], 1.5), "quality.params.q_max"),
        "missing param": (lambda d: d["quality"]["params"].popitem(), "quality.params"),
        "batch order": (setter(["batch_sizes"], [4, 2]), "batch_sizes"),
        "schema": (setter(["schema"], 2), "schema"),
        "idle zero": (setter(["idle_power_w"], 0), "idle_power_w"),
        "resolution str": (setter(["resolution"], "512"), "resolution"),
        "heldout": (setter(["fit", "heldout_steps"], ["x"]), "fit.heldout_steps"),
        "energy basis": (setter(["energy_j", "basis"], "wall"), "energy_j.basis"),
    }


@pytest.mark.parametrize("name", list(_mutations()))
def test_bad_card_names_file_and_field(tmp_path, name):
    mutate, field = _mutations()[name]
    data = json.loads((CARDS_DIR / card_filename("a100-sxm4-40gb", "sdxl", "eager")).read_text())
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CardError) as info:
        load_card(path)
    assert str(path) in str(info.value) and field in str(info.value)


def test_unreadable_and_misnamed_cards(tmp_path):
    bad = tmp_path / "x__y__z.json"
    bad.write_text("{not json")
    with pytest.raises(CardError, match="not valid JSON"):
        load_cards(tmp_path)
    bad.write_text((CARDS_DIR / card_filename("a100-sxm4-40gb", "sdxl", "eager")).read_text())
    with pytest.raises(CardError, match="file name does not match"):
        load_cards(tmp_path)
    with pytest.raises(CardError, match="no such model-card folder"):
        load_cards(tmp_path / "absent")
    with pytest.raises(CardError, match="no such model card"):
        load_card(tmp_path / "absent.json")


def test_cards_import_without_torch():
    code = "import sys, twin.cards, twin.calibrate, twin.fitting; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
