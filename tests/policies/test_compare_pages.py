"""policies.compare_pages: one learner on one results page against one on another, paired by seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from policies.compare_pages import main, same_scenario
from policies.report import fmt, seed_areas

CONFIG = {"study": "sparsity", "scenario": "default", "scenario_toml": "[scenario]\nname = 'default'\n",
          "eval_days": [1, 181, 361], "eval_day_seeds": [10000, 10001, 10002]}  # fmt: skip
STEPS = (0, 4000, 8000, 12000)


def outcome(policy: str, setting: str, utility: dict[int, float]) -> pd.DataFrame:
    """One outcome row per seed (seed -> utility)."""
    return pd.DataFrame([{"study": "sparsity", "setting": setting, "policy": policy, "seed": s, "utility": u,
                          "utility_pct_of_bound": u / 7.0, "violation_rate": 0.01 * (s + 1), "energy_cost": 5.0}
                         for s, u in utility.items()])  # fmt: skip


def curve(policy: str, setting: str, values: dict[int, list[float]], steps=STEPS) -> pd.DataFrame:
    """Held-out curve rows: seed -> utility at each of ``steps``."""
    return pd.DataFrame([{"policy": policy, "seed": s, "step": step, "utility": u, "violation_rate": 0.0,
                          "curve_source": "held-out", "setting": setting}
                         for s, us in values.items() for step, u in zip(steps, us, strict=True)])  # fmt: skip


def write_page(
    root: Path, name: str, table: pd.DataFrame, curves: pd.DataFrame | None, config=CONFIG
) -> Path:
    page = root / name
    (page / "sparsity").mkdir(parents=True)
    table.sample(frac=1.0, random_state=1).to_csv(
        page / "sparsity" / "sparsity.csv", index=False
    )  # rows shuffled
    if curves is not None:
        curves.sample(frac=1.0, random_state=2).to_csv(page / "sparsity" / "sparsity_curves.csv", index=False)
    (page / "sparsity" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return page


def paired(d) -> str:
    """What the command should print for the paired differences ``d`` (computed independently)."""
    d = np.asarray(d, dtype=float)
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    p = stats.ttest_rel(d, np.zeros_like(d)).pvalue
    return f"A − B {fmt(d.mean())} (95% CI {fmt(d.mean() - half)} to {fmt(d.mean() + half)}, p = {fmt(p)}"


def line(out: str, head: str, name: str = "utility") -> str:
    """The ``name`` line under the section that starts with ``head``."""
    section = out.split(head, 1)[1]
    return next(x for x in section.splitlines() if x.strip().startswith(f"{name}:"))


RNG = np.random.default_rng(0)
A_UTIL = {0: 660.0, 1: 672.0, 2: 655.0, 3: 690.0, 4: 700.0}  # seed 0 only on A, 5 only on B
B_UTIL = {5: 610.0, 4: 670.0, 3: 640.0, 2: 671.0, 1: 650.0}
A_CURVE = {s: list(RNG.normal(630, 10, len(STEPS))) for s in range(5)}
B_CURVE = {s: list(RNG.normal(620, 10, len(STEPS))) for s in range(1, 6)}
SHARED = (1, 2, 3, 4)


@pytest.fixture
def pages(tmp_path):
    a = write_page(tmp_path, "dense", outcome("sac", "settle=1", A_UTIL), curve("sac", "settle=1", A_CURVE))
    table = pd.concat(
        [outcome("sac", "settle=daily", B_UTIL), outcome("sac+diffusion", "settle=daily", B_UTIL)]
    )
    curves = pd.concat([curve("sac", "settle=288+redistribute", B_CURVE),
                        curve("sac+diffusion", "settle=288+redistribute", B_CURVE)])  # fmt: skip
    return a, write_page(tmp_path, "daily", table, curves)


def test_outcome_and_curve_area_are_paired_by_seed_over_the_seeds_both_ran(pages, capsys):
    a, b = pages
    assert main([str(a), f"{b}:sac"]) == 0
    out = capsys.readouterr().out
    assert "A = dense sac (settle=1), B = daily sac (settle=daily): 4 seeds both ran (1, 2, 3, 4)" in out
    assert paired([A_UTIL[s] - B_UTIL[s] for s in SHARED]) in line(out, "held-out outcome")
    assert "steps 4000-12000, the 3 evaluations" in out  # step 0 (the untrained policy) is not in the area
    area = [np.mean(A_CURVE[s][1:]) - np.mean(B_CURVE[s][1:]) for s in SHARED]
    assert paired(area) in line(out, "area under")


def test_until_limits_the_area_to_the_early_evaluations(pages, capsys):
    a, b = pages
    assert main([str(a), str(b), "--until", "8000"]) == 0
    out = capsys.readouterr().out
    assert "steps 4000-8000, the 2 evaluations" in out
    assert paired([np.mean(A_CURVE[s][1:3]) - np.mean(B_CURVE[s][1:3]) for s in SHARED]) in line(
        out, "area under"
    )


def test_the_area_covers_only_the_steps_both_pages_evaluated(tmp_path, capsys):
    a = write_page(tmp_path, "a", outcome("sac", "s", A_UTIL), curve("sac", "s", A_CURVE))
    every_2k = (0, 2000, 4000, 6000, 8000, 10000, 12000)
    b_curve = {s: list(RNG.normal(620, 10, len(every_2k))) for s in SHARED}
    b = write_page(tmp_path, "b", outcome("sac", "s", B_UTIL), curve("sac", "s", b_curve, every_2k))
    assert main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "steps 4000-12000, the 3 evaluations" in out
    area = [np.mean(A_CURVE[s][1:]) - np.mean([b_curve[s][i] for i in (2, 4, 6)]) for s in SHARED]
    assert paired(area) in line(out, "area under")


def test_an_area_over_given_steps_is_missing_for_a_run_that_lacks_one_of_them():
    curves = pd.DataFrame({
        "setting": "s", "policy": "sac",
        "seed": [0, 0, 0, 0, 1, 1, 1],
        "step": [0, 2000, 4000, 6000, 0, 2000, 6000],
        "utility": [1.0, 2.0, 4.0, 9.0, 1.0, 3.0, 5.0],
    })  # fmt: skip
    every = seed_areas(curves).set_index("seed").utility
    given = seed_areas(curves, [2000, 4000]).set_index("seed").utility
    assert every.to_dict() == {0: 5.0, 1: 4.0}  # after step 0, whatever a run evaluated
    assert given[0] == 3.0 and np.isnan(given[1])  # seed 1 has no evaluation at 4000
    nan_at_4000 = curves.assign(utility=curves.utility.where(curves.step != 4000))
    assert np.isnan(seed_areas(nan_at_4000, [2000, 4000]).set_index("seed").utility[0])


def test_with_validation_evaluations_the_deployed_policy_curve_is_compared_too(tmp_path, capsys):
    val = (1.0, 3.0, 2.0, 4.0)  # chosen: step 0, then 4000 at 4000 and 8000, then 12000

    a_curve, b_curve = (
        curve("sac", "s", c).assign(val_utility=lambda f: f.step.map(dict(zip(STEPS, val, strict=True))))
        for c in (A_CURVE, B_CURVE)
    )
    a = write_page(tmp_path, "a", outcome("sac", "s", A_UTIL), a_curve)
    b = write_page(tmp_path, "b", outcome("sac", "s", B_UTIL), b_curve)
    assert main([str(a), str(b)]) == 0
    out = capsys.readouterr().out

    def deployed(us):  # steps 4000, 8000, 12000 deploy the policies of 4000, 4000 and 12000
        return np.mean([us[1], us[1], us[3]])

    assert paired([deployed(A_CURVE[s]) - deployed(B_CURVE[s]) for s in SHARED]) in line(
        out, "deployed-policy"
    )
    b_plain = write_page(tmp_path, "plain", outcome("sac", "s", B_UTIL), curve("sac", "s", B_CURVE))
    assert main([str(a), str(b_plain)]) == 0
    out = capsys.readouterr().out
    assert (
        "area under the deployed-policy curve: not computed; runs without validation evaluations in plain sac"
        in out
    )
    later = {s + 10: us for s, us in B_CURVE.items()}
    unvalidated = write_page(
        tmp_path, "later", outcome("sac", "s", {s + 10: 1.0 for s in B_UTIL}), curve("sac", "s", later)
    )
    assert main([str(a), f"{b}+{unvalidated}"]) == 0
    assert "not computed; runs without validation evaluations in b+later sac (s)" in capsys.readouterr().out


def test_a_missing_value_leaves_its_seed_out_of_that_comparison(tmp_path, capsys):
    b_util = {**B_UTIL, 2: float("nan")}
    b_curve = {**B_CURVE, 1: [B_CURVE[1][0], np.nan, *B_CURVE[1][2:]]}
    a = write_page(tmp_path, "a", outcome("sac", "s", A_UTIL), curve("sac", "s", A_CURVE))
    b = write_page(tmp_path, "b", outcome("sac", "s", b_util), curve("sac", "s", b_curve))
    assert main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    util = line(out, "held-out outcome")
    assert util.startswith(f"  utility: {fmt(np.mean([A_UTIL[s] for s in (1, 3, 4)]))} vs ")
    assert paired([A_UTIL[s] - B_UTIL[s] for s in (1, 3, 4)]) in util and "n = 3 seeds" in util
    area = [np.mean(A_CURVE[s][1:]) - np.mean(B_CURVE[s][1:]) for s in (2, 3, 4)]
    assert paired(area) in line(out, "area under")


def test_a_learner_and_setting_can_be_named(pages, capsys):
    _, b = pages
    assert main([f"{b}:sac+diffusion:settle=daily", f"{b}:sac"]) == 0
    assert "A = daily sac+diffusion (settle=daily), B = daily sac (settle=daily)" in capsys.readouterr().out


def test_without_curves_the_outcome_is_still_compared(tmp_path, capsys):
    a = write_page(tmp_path, "a", outcome("sac", "s", A_UTIL), None)
    b = write_page(tmp_path, "b", outcome("sac", "s", B_UTIL), curve("sac", "s", B_CURVE))
    assert main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert (
        "utility: " in out
        and f"area under the learning curve: not computed; {a}/sparsity: no held-out" in out
    )


def test_curves_of_a_learner_with_several_settings_must_carry_the_tables_label(tmp_path, capsys):
    table = pd.concat([outcome("sac", "settle=daily", B_UTIL), outcome("sac", "settle=scenario", B_UTIL)])
    curves = pd.concat([curve("sac", "base", B_CURVE), curve("sac", "settle=288", B_CURVE)])
    page = write_page(tmp_path, "two", table, curves)
    a = write_page(tmp_path, "a", outcome("sac", "s", A_UTIL), curve("sac", "s", A_CURVE))
    assert main([str(a), f"{page}:sac:settle=daily"]) == 0
    out = capsys.readouterr().out
    assert (
        "curves are labelled base, settle=288, none 'settle=daily'" in out
        and "area under the held" not in out
    )


@pytest.mark.parametrize(
    "side, message",
    [("{b}:td3", "no 'td3' rows; its learners: sac, sac+diffusion"),
     ("{b}:sac:settle=1", "sac has no setting 'settle=1'; it ran in settle=daily"),
     ("{b}/missing", "no sparsity study there")],
)  # fmt: skip
def test_a_side_naming_nothing_is_a_one_line_error(pages, capsys, side, message):
    a, b = pages
    assert main([str(a), side.format(b=b)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "change, message",
    [({"eval_days": [2, 182, 362]}, "the pages differ in eval_days"),
     ({"scenario_toml": "[scenario]\nname = 'default'\nprice_k = 2\n"}, "the pages differ in scenario_toml"),
     ({"eval_day_seeds": None}, "does not say eval_day_seeds")],
)  # fmt: skip
def test_pages_that_do_not_share_their_held_out_days_and_scenario_do_not_pair(
    tmp_path, capsys, change, message
):
    a = write_page(tmp_path, "a", outcome("sac", "s", A_UTIL), None)
    config = {k: v for k, v in {**CONFIG, **change}.items() if v is not None}
    b = write_page(tmp_path, "b", outcome("sac", "s", B_UTIL), None, config)
    assert main([str(a), str(b)]) == 2
    assert message in capsys.readouterr().err


def test_fewer_than_two_shared_seeds_bad_until_and_bad_csvs_are_one_line_errors(tmp_path, capsys):
    a = write_page(tmp_path, "a", outcome("sac", "s", {0: 1.0, 1: 2.0}), None)
    b = write_page(tmp_path, "b", outcome("sac", "s", {1: 1.0, 2: 2.0}), None)
    bad = write_page(tmp_path, "bad", outcome("sac", "s", B_UTIL).drop(columns="seed"), None)
    for argv, message in (([str(a), str(b)], "share 1 seed(s)"), ([str(a), str(a), "--until", "0"], "--until 0"),
                          ([str(a), str(bad)], "no column seed")):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_a_learner_whose_settings_are_ambiguous_must_be_named(tmp_path, capsys):
    page = write_page(
        tmp_path, "two", pd.concat([outcome("sac", "x", B_UTIL), outcome("sac", "y", B_UTIL)]), None
    )
    assert main([str(page), str(page)]) == 2
    assert "sac ran in x, y; name one" in capsys.readouterr().err


def test_scenarios_are_compared_as_parsed_not_as_text():
    pytest.importorskip("twin.scenario")
    from twin.scenario import load_scenario

    text = load_scenario("default").to_toml()
    older = "\n".join(
        line for line in text.splitlines() if line.strip() != "level = 1.0"
    )  # before prices.level
    assert older != text and same_scenario(older, text)
    assert not same_scenario(text, text.replace("reward_scale = 0.3", "reward_scale = 0.6"))
    assert not same_scenario(
        "[scenario]\nname = 'default'\n", "[scenario]\nname = 'other'\n"
    )  # unparsed: text


def budget(total_steps: int, **train) -> dict:
    return {"budget": {"name": "quick", "total_steps": total_steps, "train": {"eta": 1.0, **train}}}


def test_a_side_pools_pages_of_disjoint_seeds_and_names_their_differing_settings(tmp_path, capsys):
    later = {s + 10: u - 5.0 for s, u in A_UTIL.items()}  # a replication on seeds 10-14
    later_curve = {s + 10: [u - 5.0 for u in us] for s, us in A_CURVE.items()}
    b_util = {**B_UTIL, **{s + 10: u for s, u in B_UTIL.items()}}
    b_curve = {**B_CURVE, **{s + 10: us for s, us in B_CURVE.items()}}
    a0 = write_page(tmp_path, "a0", outcome("sac", "s", A_UTIL), curve("sac", "s", A_CURVE),
                    {**CONFIG, **budget(12000)})  # fmt: skip
    a1 = write_page(tmp_path, "a1", outcome("sac", "s", later), curve("sac", "s", later_curve),
                    {**CONFIG, **budget(12000, shaper_periods=8), "commit": "0123456789ab"})  # fmt: skip
    b = write_page(tmp_path, "b", outcome("sac", "s", b_util), curve("sac", "s", b_curve))
    assert main([f"{a0}+{a1}:sac", str(b)]) == 0
    out = capsys.readouterr().out
    shared = [*SHARED, *(s + 10 for s in SHARED)]
    a_util = {**A_UTIL, **later}
    assert "A = a0+a1 sac (s), B = b sac (s): 8 seeds both ran (1, 2, 3, 4, 11, 12, 13, 14)" in out
    assert (
        "a0+a1 sac (s) pools pages that differ in commit: a0=unknown, a1=0123456; shaper_periods: a0=default, a1=8"
        in out
    )
    assert paired([a_util[s] - b_util[s] for s in shared]) in line(out, "held-out outcome")
    a_curve = {**A_CURVE, **later_curve}
    assert paired([np.mean(a_curve[s][1:]) - np.mean(b_curve[s][1:]) for s in shared]) in line(
        out, "area under"
    )


@pytest.mark.parametrize(
    "second, message",
    [(({5: 1.0, 4: 2.0}, budget(12000)), "seed 4 is on both"),
     (({8: 1.0, 9: 2.0}, budget(24000)), "pooled pages trained for different steps"),
     (({8: 1.0, 9: 2.0}, {"eval_days": [2, 182, 362]}), "the pages differ in eval_days")],
)  # fmt: skip
def test_pages_that_do_not_pool_are_one_line_errors(tmp_path, capsys, second, message):
    util, change = second
    a0 = write_page(tmp_path, "a0", outcome("sac", "s", A_UTIL), None, {**CONFIG, **budget(12000)})
    a1 = write_page(tmp_path, "a1", outcome("sac", "s", util), None, {**CONFIG, **budget(12000), **change})
    b = write_page(tmp_path, "b", outcome("sac", "s", B_UTIL), None)
    assert main([f"{a0}+{a1}", str(b)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_a_pooled_side_of_different_settings_or_an_empty_page_name_is_refused(tmp_path, capsys):
    a0 = write_page(tmp_path, "a0", outcome("sac", "x", A_UTIL), None)
    a1 = write_page(tmp_path, "a1", outcome("sac", "y", {8: 1.0, 9: 2.0}), None)
    for argv, message in (([f"{a0}+{a1}", str(a0)], "ran sac in different settings"),
                          ([f"{a0}+:sac", str(a0)], "expected PAGE[+PAGE...]")):  # fmt: skip
        assert main(argv) == 2
        assert message in capsys.readouterr().err


def test_a_learner_against_a_baseline_pairs_each_seed_with_its_one_run(tmp_path, capsys):
    table = pd.concat([outcome("sac", "s", A_UTIL), outcome("quality-first", "s", {0: 680.0})])
    page = write_page(tmp_path, "p", table, curve("sac", "s", A_CURVE))
    assert main([f"{page}:sac", f"{page}:quality-first"]) == 0
    out = capsys.readouterr().out
    assert (
        "quality-first is a baseline, one deterministic run" in out
        and "over sac's 5 seeds (0, 1, 2, 3, 4)" in out
    )
    assert paired([u - 680.0 for u in A_UTIL.values()]) in line(out, "held-out outcome")
    assert "a baseline has no learning curve" in out
    assert main([f"{page}:quality-first", f"{page}:sac"]) == 0  # either side may be the baseline
    assert paired([680.0 - u for u in A_UTIL.values()]) in line(capsys.readouterr().out, "held-out outcome")


def test_two_baselines_or_a_baseline_with_two_results_are_one_line_errors(tmp_path, capsys):
    two = pd.concat([outcome("sac", "s", A_UTIL), outcome("oracle", "s", {0: 700.0}),
                     outcome("quality-first", "s", {0: 680.0, 1: 681.0})])  # fmt: skip
    page = write_page(tmp_path, "p", two, None)
    for side, message in (("oracle", "are both baselines"), ("sac", "2 distinct utility values")):
        assert main([f"{page}:{side}", f"{page}:quality-first"]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_a_baseline_without_a_value_leaves_that_column_untestable(tmp_path, capsys):
    base = outcome("quality-first", "s", {0: 680.0}).assign(energy_cost=float("nan"))
    page = write_page(tmp_path, "p", pd.concat([outcome("sac", "s", A_UTIL), base]), None)
    assert main([f"{page}:sac", f"{page}:quality-first"]) == 0
    out = capsys.readouterr().out
    assert "not testable, n = 0 seeds" in line(out, "held-out outcome", "energy_cost")
    assert paired([u - 680.0 for u in A_UTIL.values()]) in line(out, "held-out outcome")


def test_baselines_do_not_pool_or_take_until(tmp_path, capsys):
    table = pd.concat([outcome("sac", "s", A_UTIL), outcome("quality-first", "s", {0: 680.0})])
    a0, a1 = (write_page(tmp_path, name, table, None) for name in ("a0", "a1"))
    for argv, message in (([f"{a0}:sac", f"{a0}+{a1}:quality-first"], "name one page for it"),
                          ([f"{a0}:sac", f"{a0}:quality-first", "--until", "4000"], "a baseline has no curve")):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_pooled_pages_must_share_curve_steps_and_not_share_a_curve_seed(tmp_path, capsys):
    a0 = write_page(tmp_path, "a0", outcome("sac", "s", A_UTIL), curve("sac", "s", A_CURVE))
    later = {s + 10: us for s, us in A_CURVE.items()}
    a1 = write_page(tmp_path, "a1", outcome("sac", "s", {s + 10: 1.0 for s in A_UTIL}),
                    curve("sac", "s", later, steps=(0, 2000, 4000, 6000)))  # fmt: skip
    a2 = write_page(tmp_path, "a2", outcome("sac", "s", {s + 20: 1.0 for s in A_UTIL}),
                    curve("sac", "s", {**later, 4: A_CURVE[4]}))  # seed 4's curve also on a0  # fmt: skip
    b = write_page(tmp_path, "b", outcome("sac", "s", B_UTIL), None)
    for pooled, message in ((f"{a0}+{a1}", "evaluated their curves at different steps"),
                            (f"{a0}+{a2}", "seed 4 is on both")):  # fmt: skip
        assert main([pooled, str(b)]) == 2
        assert message in capsys.readouterr().err
