"""The experiment driver on the tiny scenario with a micro budget: tidy CSVs with the required columns, resumption,
the generated README section matching the CSVs, twin variants, and one-line errors for bad input."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from policies import experiment_settings, experiments, report
from policies.experiment_env import EnvSpec, build_scenario, make_env, scaled_prices
from policies.experiment_settings import Budget

MICRO = Budget(
    name="quick",
    scenario="tiny",
    total_steps=120,
    seeds=(0, 1),
    eval_days=1,
    train={
        "learning_starts": 72,
        "shaping_start": 72,
        "shaper_fit_every": 48,
        "train_freq": 4,
        "shaper_updates": 2,
        "shaper_periods": 4,
        "net_width": 16,
        "batch_size": 16,
        "buffer_size": 1_000,
        "checkpoint_every": 60,
    },
    curve_points=4,
    learners=("sac+diffusion", "sac"),
    price_k=(0.5, 1.0),
    price_learners=("sac+diffusion",),
    model_mixes=("heterogeneous",),
    model_learners=("sac+diffusion",),
    ablations=("full",),
    ablation_learners=("sac+diffusion",),
    shaper_steps=(5,),
    latent=(128,),
    eta=(0.4,),  # every setting is the base run: only the four convergence runs are trained, and
    settlements=("scenario",),
    redistributed=("scenario",),  # these four with reward_mix=redistribute
    price_levels=(
        1.0,
        30.0,
    ),  # the oracle and the heuristics at both, the learner at level 1: the base run again
    trained_levels=(1.0,),
    energy_learners=("sac+diffusion",),
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One driver invocation over all six studies with the micro budget."""
    tmp = tmp_path_factory.mktemp("exp")
    mp = pytest.MonkeyPatch()
    mp.setitem(experiment_settings.BUDGETS, "quick", MICRO)
    readme = tmp / "README.md"
    readme.write_text("# project\n\nintro\n", encoding="utf-8")
    argv = ["--quick", "--workers", "1", "--no-progress", "--out", str(tmp / "results"),
            "--runs-root", str(tmp / "runs"), "--readme", str(readme)]  # fmt: skip
    assert experiments.main(argv) == 0
    yield tmp, argv, mp
    mp.undo()


def test_every_study_writes_a_tidy_csv_with_the_required_columns(finished):
    tmp, _, _ = finished
    for study in experiment_settings.STUDIES:
        table = pd.read_csv(tmp / "results" / study / f"{study}.csv")
        assert {"study", "setting", "policy", "seed", "utility"} <= set(table.columns), study
        assert (tmp / "results" / study / "config.json").is_file()
        assert list((tmp / "results" / study).glob("*.png")), study
        assert not table.duplicated(["setting", "policy", "seed"]).any(), study
    outcome = pd.read_csv(tmp / "results" / "outcome" / "outcome.csv")
    assert {"sac+diffusion", "sac", "oracle"} <= set(outcome.policy)
    for col in (
        "revenue",
        "penalty",
        "energy_cost",
        "transfer_cost",
        "violation_rate",
        "utility_pct_of_bound",
    ):
        assert col in outcome.columns
    assert np.allclose(outcome.loc[outcome.policy == "oracle", "utility_pct_of_bound"], 100.0)
    # the oracle bounds every policy on the same held-out days
    assert (outcome.utility <= outcome.oracle_bound + 1e-6).all()
    prices = pd.read_csv(tmp / "results" / "prices" / "prices.csv")
    assert set(prices.setting) == {"k=0.5", "k=1"}


def test_a_second_invocation_skips_finished_runs(finished, monkeypatch):
    tmp, argv, _ = finished

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr("policies.train.train", no_training)
    monkeypatch.setattr("policies.experiments.oracle_row", no_training)
    parts = sorted((tmp / "runs" / "eval").glob("*.csv"))
    stamps = [p.stat().st_mtime_ns for p in parts]
    assert experiments.main(argv) == 0
    assert [p.stat().st_mtime_ns for p in parts] == stamps


def test_readme_section_numbers_come_from_the_csvs(finished):
    tmp, _, _ = finished
    text = (tmp / "README.md").read_text(encoding="utf-8")
    assert text.startswith("# project\n\nintro\n")
    assert text.count("## Results") == 1 and report.START in text and report.END in text
    outcome = pd.read_csv(tmp / "results" / "outcome" / "outcome.csv")
    for policy in ("sac+diffusion", "oracle"):
        mean, half, _ = report.mean_ci(outcome[outcome.policy == policy].utility)
        cell = report.fmt(mean) + (f" ± {report.fmt(half)}" if np.isfinite(half) else "")
        assert f"| base | {policy} |" in text and cell in text
    pct = report.mean_ci(outcome[outcome.policy == "sac+diffusion"].utility_pct_of_bound)[0]
    assert f"sac+diffusion {report.fmt(pct)}%" in text
    assert ("### What we found" in text and "significant" in text) or "not testable" in text


def test_index_of_pages_comes_from_their_csvs_and_replaces_itself(finished, capsys):
    tmp, _, _ = finished
    readme = tmp / "INDEX.md"
    readme.write_text("# intro\n", encoding="utf-8")
    argv = ["--index", str(tmp / "results"), "--readme", str(readme)]
    assert report.main(argv) == 0 and report.main(argv) == 0  # the second run replaces, never appends
    text = readme.read_text(encoding="utf-8")
    assert (
        text.startswith("# intro\n") and text.count(report.INDEX_START) == text.count(report.INDEX_END) == 1
    )
    outcome = pd.read_csv(tmp / "results" / "outcome" / "outcome.csv")
    mean, half, _ = report.mean_ci(outcome[outcome.policy == "sac+diffusion"].utility_pct_of_bound)
    row = next(line for line in text.splitlines() if "| outcome: base |" in line)
    assert f"| {report.fmt(mean)} ± {report.fmt(half)} |" in row and "seeds |" in row
    assert "sparsity: settle=scenario |" not in text  # the outcome's own runs again: one row, not two
    assert "sparsity: settle=scenario+redistribute |" in text  # trained otherwise: a row of its own
    assert report.main(["--index", str(tmp / "nowhere"), "--readme", str(readme)]) == 2
    assert capsys.readouterr().err.startswith("error: no study results under")
    assert readme.read_text(encoding="utf-8") == text  # a bad page leaves the index as it was


def test_index_adds_pages_to_those_it_lists(finished, tmp_path):
    tmp, _, _ = finished
    other = tmp_path / "pages" / "other"
    shutil.copytree(tmp / "results", other)
    readme = tmp_path / "INDEX.md"
    assert report.main(["--index", str(tmp / "results"), "--readme", str(readme)]) == 0
    assert report.main(["--index", str(other), "--readme", str(readme)]) == 0  # added, the first kept
    text = readme.read_text(encoding="utf-8")
    assert report.indexed_pages(text, readme) and len(report.indexed_pages(text, readme)) == 2
    assert "[results](" in text and "[other](" in text
    assert report.main(["--index", str(other), "--readme", str(readme)]) == 0  # listed once, not twice
    assert report.main(["--index", str(tmp / "results"), "--readme", str(readme)]) == 0  # order kept
    assert readme.read_text(encoding="utf-8") == text
    assert report.main(["--index", str(other), "--replace-index", "--readme", str(readme)]) == 0
    text = readme.read_text(encoding="utf-8")
    assert "[other](" in text and "[results](" not in text
    assert report.main(["--replace-index", "--readme", str(readme)]) == 2


def test_curves_of_several_pages_make_one_figure(finished, tmp_path, capsys):
    tmp, _, _ = finished
    png = tmp_path / "curves.png"
    assert report.main(["--curves", f"{tmp / 'results'},{tmp / 'results'}", "--png", str(png)]) == 0
    assert png.stat().st_size > 0
    assert report.main(["--curves", str(tmp / "results")]) == 2
    assert report.main(["--curves", str(tmp_path), "--png", str(png)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "error: --curves needs --png (the figure to write)",
        f"error: no sparsity learning curves under {tmp_path}",
    ]


def test_the_same_runs_on_two_pages_are_drawn_once(finished, tmp_path, monkeypatch):
    import shutil

    tmp, _, _ = finished
    shutil.copytree(tmp / "results", tmp_path / "copy")
    lines, save = [], report.save_figure

    def counting_save(fig, path):
        lines.append([len(ax.get_lines()) for ax in fig.axes])
        return save(fig, path)

    monkeypatch.setattr(report, "save_figure", counting_save)
    assert report.main(["--curves", str(tmp / "results"), "--png", str(tmp_path / "one.png")]) == 0
    assert (
        report.main(
            ["--curves", f"{tmp / 'results'},{tmp_path / 'copy'}", "--png", str(tmp_path / "two.png")]
        )
        == 0
    )
    assert lines[0] == lines[1] and lines[0][0] > 0


def test_a_page_of_sac_alone_draws_one_panel_not_an_empty_second(finished, tmp_path, monkeypatch):
    tmp, _, _ = finished
    curves = pd.read_csv(tmp / "results" / "sparsity" / "sparsity_curves.csv")
    panels, save = [], report.save_figure
    monkeypatch.setattr(
        report, "save_figure", lambda fig, path: panels.append(len(fig.axes)) or save(fig, path)
    )
    config = {"scenario": "tiny"}
    report.convergence_figure(curves, tmp_path / "all.png", config, by_setting=True)
    report.convergence_figure(curves[curves.policy == "sac"], tmp_path / "sac.png", config, by_setting=True)
    assert panels == [2, 1]


def test_a_page_redraws_its_figures_from_its_csvs(finished, tmp_path):
    import shutil

    tmp, _, _ = finished
    page = tmp_path / "page"
    shutil.copytree(tmp / "results", page)
    figures = sorted(p.relative_to(page) for p in page.rglob("*.png"))
    assert figures and Path("sparsity/sparsity_curves.png") in figures
    for p in page.rglob("*.png"):
        p.unlink()
    assert report.main(["--out", str(page), "--readme", str(page / "README.md")]) == 0
    assert sorted(p.relative_to(page) for p in page.rglob("*.png")) == figures


def test_curve_course_names_where_a_curve_starts_peaks_and_ends():
    rows = [
        {
            "setting": "s",
            "policy": "sac",
            "seed": seed,
            "step": step,
            "utility": u + seed,
            "curve_source": "held-out",
        }
        for seed in (0, 2)
        for step, u in ((0, 10.0), (100, 30.0), (200, 20.0))
    ]
    [line] = report.curve_course(pd.DataFrame(rows), "EUR")
    assert "s sac: 11.00 at step 0, best 31.00 at step 100, 21.00 at step 200" in line and "held-out" in line
    # a shaped learner ahead by 5 (seed 0) and 7 (seed 2) after step 0: its area under the curve is 6 higher
    shaped = [
        {**r, "policy": "sac+perfect", "utility": r["utility"] + (r["step"] > 0) * (5 + r["seed"])}
        for r in rows
    ]
    other = [
        {**r, "policy": "sac+diffusion", "utility": r["utility"] + (r["step"] > 0) * (1 + r["seed"])}
        for r in rows
    ]
    course, area = report.curve_course(pd.DataFrame(rows + shaped + other), "EUR")
    assert "s sac+perfect: 11.00 at step 0, best 37.00 at step 100" in course
    assert "Area under the learning curve" in area and "s: sac+perfect − sac 6.00 (95% CI" in area
    assert "s: sac+diffusion − sac 2.00 (95% CI" in area  # every learner against sac, not only one
    assert report.curve_course(pd.DataFrame(), "EUR") == []
    assert report.curve_course(pd.DataFrame(rows).assign(curve_source="training"), "EUR") == []


def test_the_deployed_policy_curve_keeps_the_best_on_validation_days_so_far():
    def run(policy, seed, held, val):
        return [{"setting": "s", "policy": policy, "seed": seed, "step": 100 * i, "utility": u, "val_utility": v,
                 "curve_source": "held-out"} for i, (u, v) in enumerate(zip(held, val, strict=True))]  # fmt: skip

    rows = run("sac", 0, [10, 30, 20, 5, 8], [1, 3, 3, 9, 2]) + run(
        "sac", 1, [7, 1, 2, 3, 4], [5, 4, 3, 2, 1]
    )
    chosen = report.chosen_curves(pd.DataFrame(rows).sample(frac=1.0, random_state=0))  # any row order
    by_seed = {s: g.sort_values("step").utility.tolist() for s, g in chosen.groupby("seed")}
    assert by_seed == {0: [10, 30, 30, 5, 5], 1: [7, 7, 7, 7, 7]}  # a tie keeps the earlier policy
    gap = pd.DataFrame(rows).assign(
        val_utility=lambda f: f.val_utility.where(f.step != 300)
    )  # no value at 300
    assert report.chosen_curves(gap).query("seed == 0").sort_values("step").utility.tolist() == [
        10,
        30,
        30,
        30,
        30,
    ]
    without = pd.DataFrame(rows).assign(val_utility=np.nan)
    assert (
        report.chosen_curves(without).empty
        and report.chosen_curves(without.drop(columns="val_utility")).empty
    )
    # sac+perfect is 2 (seed 0) and 4 (seed 1) higher at every step after 0, but seed 1 keeps its step-0 policy:
    # it deploys 2 more on seed 0 and nothing more on seed 1, an area 1 higher
    shaped = [{**r, "policy": "sac+perfect", "utility": r["utility"] + (r["step"] > 0) * 2 * (r["seed"] + 1)}
              for r in rows]  # fmt: skip
    lines = report.curve_area_comparison(pd.DataFrame(rows + shaped), "EUR")
    assert len(lines) == 2 and lines[1].startswith("**Area under the deployed-policy curve**")
    assert "s: sac+perfect − sac 1.00 (95% CI" in lines[1]
    assert (
        len(report.curve_area_comparison(pd.DataFrame(rows + shaped).drop(columns="val_utility"), "EUR")) == 1
    )
    # the index's column: the same area difference; curves of older pages named after the run's spec, one label
    # per learner, are taken where the learner ran in one setting of the table
    table = pd.DataFrame({"policy": ["sac", "sac", "sac+perfect", "sac+perfect"], "setting": "settle=daily",
                          "seed": [0, 1, 0, 1]})  # fmt: skip
    old = pd.DataFrame(
        [{**r, "setting": "settle=288"} for r in rows] + [{**r, "setting": "settle=288+r"} for r in shaped]
    )
    for curves in (pd.DataFrame(rows + shaped).assign(setting="settle=daily"), old):
        assert report.deployed_area_difference(curves, table, "settle=daily", "sac+perfect").startswith(
            "+1.0 (-11.7 to +13.7), p = 0.5, better on 1/2 seeds"
        )
    two = pd.concat([table, table.assign(setting="settle=hourly")])  # which label is which setting: unknown
    assert report.deployed_area_difference(old, two, "settle=daily", "sac+perfect") == "–"
    elsewhere = table.assign(setting=np.where(table.policy == "sac", "settle=hourly", "settle=daily"))
    assert (
        report.deployed_area_difference(old, elsewhere, "settle=daily", "sac+perfect") == "–"
    )  # sac never ran there
    assert (
        report.deployed_area_difference(old.drop(columns="val_utility"), table, "settle=daily", "sac+perfect")
        == "–"
    )


def test_runs_chosen_on_validation_days_get_a_deployed_policy_figure(finished, tmp_path, capsys):
    tmp, _, _ = finished
    rows = [{"setting": "s", "policy": policy, "seed": seed, "step": step, "utility": 10.0 + step / 100 + seed,
             "val_utility": [1.0, 3.0, 2.0][i], "violation_rate": 0.0, "curve_source": "held-out"}
            for policy in ("sac", "sac+diffusion") for seed in (0, 1)
            for i, step in enumerate((0, 100, 200))]  # fmt: skip
    page = tmp_path / "page"
    (page / "sparsity").mkdir(parents=True)
    made = report.study_figures("sparsity", page / "sparsity", pd.DataFrame(), pd.DataFrame(rows), {})
    assert page / "sparsity" / "sparsity_deployed.png" in made
    pd.DataFrame(rows).to_csv(page / "sparsity" / "sparsity_curves.csv", index=False)
    png = tmp_path / "deployed.png"
    assert report.main(["--curves", str(page), "--png", str(png), "--deployed"]) == 0 and png.stat().st_size
    # the main job's runs do not choose on validation days: no such figure, and asking for one is one line
    assert not list((tmp / "results").rglob("*_deployed.png"))
    assert report.main(["--curves", str(tmp / "results"), "--png", str(png), "--deployed"]) == 2
    assert report.main(["--deployed"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: no sparsity deployed-policy curves (runs chosen on validation days) under {tmp / 'results'}",
        "error: --deployed draws the curves of --curves; give --curves too",
    ]


def test_a_line_drawn_only_in_the_right_panel_is_named_in_the_legend_below(tmp_path, monkeypatch):
    """Two pages with the same sac+diffusion runs but different sac runs: the left panel draws sac+diffusion
    once, the right panel (each minus its page's sac) twice; the one legend names all four lines."""
    rows = [{"setting": f"s [{page}]", "policy": policy, "seed": seed, "step": step, "curve_source": "held-out",
             "utility": 10.0 + step + seed + (offset if policy == "sac" else 1.0)}
            for page, offset in (("A", 0.0), ("B", 5.0)) for policy in ("sac", "sac+diffusion")
            for seed in (0, 1) for step in (0, 1, 2)]  # fmt: skip
    drawn, save = [], report.save_figure
    monkeypatch.setattr(report, "save_figure", lambda fig, path: drawn.append(fig) or save(fig, path))
    report.convergence_figure(pd.DataFrame(rows), tmp_path / "c.png", {}, by_setting=True, legend_below=True)
    left, right = drawn[0].axes
    assert len(left.get_lines()) == 3 and len(right.get_lines()) == 3  # right: two lines and the zero line
    (legend,) = drawn[0].legends
    names = [t.get_text() for t in legend.get_texts()]
    assert sorted(names) == ["sac s [A]", "sac s [B]", "sac+diffusion s [A]", "sac+diffusion s [B]"]
    colours = {line.get_label(): line.get_color() for ax in (left, right) for line in ax.get_lines()}
    assert [h.get_color() for h in legend.legend_handles] == [colours[n] for n in names]


def test_curves_of_pages_with_disjoint_seeds_pool_into_one_line_per_learner(tmp_path, monkeypatch, capsys):
    def page(name, policy, seeds):
        rows = [{"setting": "s", "policy": policy, "seed": seed, "step": step, "utility": 10.0 + step + seed,
                 "val_utility": 1.0, "violation_rate": 0.0, "curve_source": "held-out"}
                for seed in seeds for step in (0, 1, 2)]  # fmt: skip
        (tmp_path / name / "sparsity").mkdir(parents=True)
        pd.DataFrame(rows).to_csv(tmp_path / name / "sparsity" / "sparsity_curves.csv", index=False)
        return tmp_path / name

    sac, shaped, more = (
        page("sac", "sac", (0, 1)),
        page("shaped", "sac+diffusion", (0, 1)),
        page("more", "sac", (2,)),
    )
    drawn, save = [], report.save_figure
    monkeypatch.setattr(report, "save_figure", lambda fig, path: drawn.append(fig) or save(fig, path))
    png = tmp_path / "pooled.png"
    assert report.main(["--curves", f"{sac}+{shaped}+{more}", "--png", str(png)]) == 0
    left, right = drawn[0].axes
    (legend,) = drawn[0].legends  # one for both panels, outside them
    assert left.get_legend() is None and right.get_legend() is None
    assert {t.get_text() for t in legend.get_texts()} == {
        "sac+diffusion s [sac +2 pages]",
        "sac s [sac +2 pages]",
    }
    assert len(right.get_lines()) == 2  # sac+diffusion paired with the pooled sac, and the zero line
    capsys.readouterr()
    other = page("other", "sac", (5,))
    relabelled = pd.read_csv(other / "sparsity" / "sparsity_curves.csv").assign(setting="t")
    relabelled.to_csv(other / "sparsity" / "sparsity_curves.csv", index=False)
    import shutil

    for name in ("sac", "shaped"):
        shutil.copytree(tmp_path / name, tmp_path / "copy" / name)
    copies = f"{tmp_path / 'copy' / 'sac'}+{tmp_path / 'copy' / 'shaped'}"
    for curves in (f"{sac}+{sac}", f"{sac}+{other}", f"{sac}+", f"{sac}+{shaped},{copies}"):
        assert report.main(["--curves", curves, "--png", str(png)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {sac}+{sac}: sac seed 0 is on both sac and sac",
        f"error: {sac}+{other}: the pooled pages label their curves differently (sac: s; other: t)",
        f"error: {sac}+: an empty page name in a pooled group (PAGE+PAGE)",
        f"error: {copies}: labelled 'sac +1 page' like another group (the two would be drawn as one line)",
    ]


def test_a_page_says_what_learners_learn_from_under_the_redistribute_mix():
    cfg = {"scenario": "default", "budget": {"name": "quick", "train": {"reward_mix": "redistribute"}}}
    assert "uniform spread R / L" in report.budget_text(cfg)
    assert "redistribute" not in report.budget_text({**cfg, "budget": {"name": "quick", "train": {}}})
    fading = {**cfg, "budget": {"name": "quick", "train": {"eta_decay_steps": 5000}}}
    assert "Eta fades linearly to 0 over the 5000 steps" in report.budget_text(fading)
    assert "fades" not in report.budget_text(cfg)


def test_a_page_of_runs_selected_on_validation_days_says_so_and_which_steps_they_chose():
    cfg = {"scenario": "default", "budget": {"name": "quick", "train": {"val_days": 6}}}
    assert "Checkpoint selection (`val_days=6`)" in report.budget_text(cfg)
    assert "Checkpoint selection" not in report.budget_text({**cfg, "budget": {"name": "quick", "train": {}}})
    table = pd.DataFrame(
        {"setting": "s", "policy": ["sac"] * 4 + ["oracle"], "seed": [1, 0, 1, 0, 0], "day": [0, 0, 1, 1, 0],
         "policy_step": [4000, 32000, 4000, 32000, None]}
    )  # fmt: skip
    [line] = report.found_selection(table)
    assert "s sac: 32000, 4000 (seeds 0, 1)" in line and "oracle" not in line
    assert report.found_selection(table.drop(columns="policy_step")) == []


def test_the_selection_figure_is_drawn_from_curves_with_validation_utility(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    evals = {"step": [0, 100, 200], "days": 1, "utility": [5.0, 7.0, 4.0], "revenue": 9.0, "energy_cost": 1.0,
             "penalty": 0.0, "transfer_cost": 0.0, "violation_rate": 0.1, "val_utility": [1.0, 3.0, 2.0],
             "val_best": [True, True, False], "wall_s": 0.5}  # fmt: skip
    pd.DataFrame(evals).to_csv(run / "eval.csv", index=False)
    curve = experiments.run_curve(run)
    assert curve.val_utility.tolist() == [1.0, 3.0, 2.0] and set(curve.curve_source) == {"held-out"}
    curves = pd.concat([curve.assign(policy="sac", seed=s, setting="s") for s in (0, 1)], ignore_index=True)
    assert report.selection_figure(curves, tmp_path / "sel.png", {"scenario": "tiny"}) == 1
    assert (tmp_path / "sel.png").stat().st_size > 0
    # the sensitivity study's runs share seed and setting and differ in a shaper knob: one panel each
    knobs = pd.concat([curves.assign(eta=0.2), curves.assign(eta=0.4), curves.assign(eta=np.nan)])
    assert report.selection_figure(knobs, tmp_path / "knobs.png", {"scenario": "tiny"}) == 3
    plain = curves.drop(columns="val_utility")
    assert (
        report.selection_figure(plain, tmp_path / "none.png", {}) == 0
        and not (tmp_path / "none.png").exists()
    )


def test_a_page_without_the_diffusion_learner_compares_the_one_it_ran_with_sac():
    assert report.rival(["sac", "sac+perfect", "oracle"]) == "sac+perfect"
    assert report.rival(["sac+perfect", "sac+diffusion", "sac"]) == "sac+diffusion"
    assert report.rival(["sac+perfect", "oracle"]) is None and report.rival(["sac"]) is None
    table = pd.DataFrame(
        {"setting": "s", "policy": ["sac"] * 3 + ["sac+perfect"] * 3, "seed": [0, 1, 2] * 2,
         "utility": [1.0, 2.0, 3.0, 2.0, 4.0, 5.0], "utility_pct_of_bound": [90.0, 91.0, 92.0, 91.0, 93.0, 94.0]}
    )  # fmt: skip
    [line] = report.found_by_setting(table, "Sparsity")
    assert "sac+perfect vs sac: difference 1.67" in line
    assert report.paired_points(table, "s", "sac+perfect").startswith("+1.7 (")
    both = pd.concat([table, table[table.policy == "sac+perfect"].assign(policy="sac+diffusion")])
    [line] = report.found_by_setting(both, "Sparsity")
    assert (
        "(sac+diffusion vs sac: difference 1.67" in line and "; sac+perfect vs sac: difference 1.67" in line
    )


def test_learners_are_compared_with_the_best_baseline_over_their_seeds():
    table = pd.DataFrame(
        {"setting": "s", "policy": ["sac"] * 3 + ["price-greedy", "production-default", "oracle"], "seed": [0, 1, 2, 0, 0, 0],
         "utility": [1.0, 2.0, 3.0, 2.5, 1.0, 3.0], "utility_pct_of_bound": [95.0, 97.0, 99.0, 96.0, 80.0, 100.0]}
    )  # fmt: skip
    [text] = report.versus_baseline(table, "s")
    # sac's seeds minus the best baseline's single run: -1, +1, +3 points, mean +1 (t interval over 3 seeds)
    assert text.startswith(
        "learner − price-greedy (the best baseline, 96.00%), points: sac 1.00 (95% CI -3.97 to 5.97, p = 0.478"
    )
    assert text in report.found_by_setting(table, "Sparsity")[0]
    assert report.versus_baseline(table[table.policy != "price-greedy"], "s")[0].startswith(
        "learner − production-default"
    )
    assert report.versus_baseline(table[table.policy.isin(["sac", "oracle"])], "s") == []


def test_unknown_study_is_a_one_line_error(capsys):
    assert experiments.main(["--quick", "--only", "bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown study bogus") and "\n" not in err


def test_bad_numbers_are_one_line_errors(capsys):
    assert experiments.main(["--quick", "--seeds", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --seeds must be >= 1, got 0"
    for argv in (
        ["--train", "schedule=bogus"],
        ["--train", "eta=nan"],
        ["--settlements", "²"],
        ["--train", "x"],
    ):
        assert experiments.main(["--quick", "--dry-run", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
    assert experiments.main(["--quick", "--scenario", "nope"]) == 2
    assert "no such scenario" in capsys.readouterr().err


def test_price_scaling_keeps_the_daily_mean():
    rng = np.random.default_rng(0)
    price = rng.normal(50, 20, size=(3, 24, 2))
    for k in (0.5, 2.0):
        scaled = scaled_prices(price, k)
        assert np.allclose(scaled.mean(axis=1), price.mean(axis=1))
        assert np.allclose(scaled.std(axis=1), k * price.std(axis=1))


def test_variants_change_what_they_say():
    base = build_scenario(EnvSpec("tiny"))
    rotated = build_scenario(EnvSpec("tiny", mix="rotated"))
    assert [d.model for d in rotated.datacenters] == [d.model for d in base.datacenters][::-1]
    assert rotated.datacenters[0].revenue_per_image == base.datacenters[1].revenue_per_image
    assert rotated.datacenters[0].weather == base.datacenters[0].weather
    daily = build_scenario(EnvSpec("tiny", settlement_slots=experiments.settle_slots(MICRO, "daily")))
    assert daily.settlement_slots == daily.slots_per_episode == 96
    assert "settlement_slots" not in EnvSpec("tiny").to_dict()  # keys of older runs stay valid
    bare = build_scenario(EnvSpec("tiny", no_renewables=True, no_battery=True))
    assert all(d.pv_kw == d.wind_kw == d.battery_kwh == 0 for d in bare.datacenters)
    env = make_env(EnvSpec("tiny", no_transfer=True, fixed_steps=30))
    env.reset(seed=0)
    for _ in range(3):
        _, _, _, _, info = env.step(np.ones(env.action_space.shape, dtype=np.float32))
        assert info["transferred"] == 0 and set(info["dc"]["steps"]) == {30}


def test_budgets_are_documented_and_distinct():
    quick, full = experiment_settings.QUICK, experiment_settings.FULL
    assert quick.total_steps < full.total_steps and len(quick.seeds) == 2
    assert dataclasses.asdict(quick)["scenario"] == "tiny"


def test_base_settings_are_the_outcome_studys_own_runs():
    """What the index leaves out as a repeat must be the base env trained as the base, with nothing changed."""
    full = experiment_settings.FULL
    base = EnvSpec(full.scenario)
    [outcome] = experiments.study_settings("outcome", full, base)
    for study, name in experiment_settings.BASE_SETTINGS.items():
        [(_, spec, train_env, extra)] = [
            s for s in experiments.study_settings(study, full, base) if s[0] == name
        ]
        assert spec == outcome[1] and train_env in ("base", "same") and extra == outcome[3] == {}
    others = [s for s in experiments.study_settings("ablations", full, base) if s[0] != "full"]
    assert others and all(spec != base for _, spec, _, _ in others)  # the check can fail


def test_command_line_overrides_reach_the_budget():
    ns = experiments.build_parser().parse_args(["--quick", "--total-steps", "500", "--eval-every", "100"])
    b = experiments.resolve_budget(ns)
    assert b.total_steps == 500 and b.train["eval_every"] == 100
    assert b.train["net_width"] == experiment_settings.budget("quick").train["net_width"]  # the rest kept
    with pytest.raises(experiments.ExperimentError, match="--eval-every must be >= 1"):
        experiments.resolve_budget(experiments.build_parser().parse_args(["--quick", "--eval-every", "0"]))
    fresh = experiments.build_parser().parse_args(["--quick", "--seeds", "3", "--first-seed", "8"])
    assert experiments.resolve_budget(fresh).seeds == (8, 9, 10)
    with pytest.raises(experiments.ExperimentError, match="--first-seed must be >= 0"):
        experiments.resolve_budget(experiments.build_parser().parse_args(["--quick", "--first-seed", "-1"]))


def test_sparsity_trains_the_redistributed_settlements_with_their_own_runs_and_curve_labels():
    from policies.replay import REWARD_MIXES

    assert experiment_settings.REDISTRIBUTE in REWARD_MIXES
    argv = ["--quick", "--settlements", "daily", "--redistributed", "daily"]
    b = experiments.resolve_budget(experiments.build_parser().parse_args(argv))
    rows = experiments.study_settings("sparsity", b, EnvSpec("tiny"))
    assert [(name, over) for name, _, _, over in rows] == [
        ("settle=daily", {}),
        ("settle=daily+redistribute", {"reward_mix": "redistribute"}),
    ]
    p = experiments.plan(["sparsity"], b, (0,), (0,))
    assert {setting for setting, _ in p.curves["sparsity"]} == {"settle=daily", "settle=daily+redistribute"}
    assert len(p.train) == 2 * len(b.sparsity_learners) * len(b.seeds)  # the mix makes runs of their own
    # the bar a learner must clear is in every setting's table: the heuristics beside the oracle bound
    for setting, *_ in rows:
        untrained = {e.policy for e in p.evals if e.setting == setting and e.train is None}
        assert untrained == {"oracle", *experiments.heuristic_names()}
    none = experiments.build_parser().parse_args(["--quick", "--redistributed", "none"])
    assert experiments.resolve_budget(none).redistributed == ()
    # with the mix set for every run, the redistributed settings would repeat the plain ones: left out
    every = experiments.build_parser().parse_args([*argv, "--train", "reward_mix=redistribute"])
    rows = experiments.study_settings("sparsity", experiments.resolve_budget(every), EnvSpec("tiny"))
    assert [name for name, *_ in rows] == ["settle=daily"]
    p = experiments.plan(["sparsity"], experiments.resolve_budget(every), (0,), (0,))
    assert {setting for setting, _ in p.curves["sparsity"]} == {
        "settle=daily"
    }  # the curves say what tables say


def test_energy_study_trains_learners_only_at_the_trained_levels_and_level_1_is_the_base():
    argv = ["--quick", "--price-levels", "1,10,30", "--trained-levels", "30", "--learners", "sac"]
    b = experiments.resolve_budget(experiments.build_parser().parse_args(argv))
    base = EnvSpec(b.scenario)
    rows = experiments.study_settings("energy", b, base)
    assert [(name, spec.price_level, env) for name, spec, env, _ in rows] == [
        ("level=1", 1.0, "same"),
        ("level=10", 10.0, "same"),
        ("level=30", 30.0, "same"),
    ]
    assert rows[0][1].key() == base.key()  # runs made before the level existed keep their keys
    p = experiments.plan(["energy"], b, (0,), (0,))
    assert {job.spec.price_level for job in p.train.values()} == {30.0}
    assert len(p.train) == len(b.seeds)
    for name, *_ in rows:
        untrained = {e.policy for e in p.evals if e.setting == name and e.train is None}
        assert untrained == {"oracle", *experiments.heuristic_names()}
    trained = {e.setting for e in p.evals if e.train is not None}
    assert trained == {"level=30"}
    assert {setting for setting, _ in p.curves["energy"]} == {"level=30"}
    # the variant is the scenario at that level: the money scales, the observation does not
    assert build_scenario(rows[2][1]).prices.level == 30.0
    for bad, message in (
        (["--price-levels", "1,x"], "expected comma-separated positive numbers"),
        (["--price-levels", "0"], "expected comma-separated positive numbers"),
        (
            ["--price-levels", "1,10", "--trained-levels", "30"],
            "trained level.s. 30 not among the price levels",
        ),
    ):
        with pytest.raises(experiments.ExperimentError, match=message):
            experiments.resolve_budget(experiments.build_parser().parse_args(["--quick", *bad]))
    none = experiments.build_parser().parse_args(["--quick", "--trained-levels", "none"])
    assert experiments.resolve_budget(none).trained_levels == ()


def test_learners_override_every_study_but_sensitivity():
    argv = ["--quick", "--learners", "sac+perfect,sac"]
    b = experiments.resolve_budget(experiments.build_parser().parse_args(argv))
    p = experiments.plan(["sparsity", "ablations", "sensitivity"], b, (0,), (0,))
    by_study = {}
    for job in p.evals:
        if job.train is not None:
            by_study.setdefault(job.study, set()).add(job.policy)
    assert by_study == {
        "sparsity": {"sac+perfect", "sac"},
        "ablations": {"sac+perfect", "sac"},
        "sensitivity": {"sac+diffusion"},
    }
    default = experiment_settings.Budget("b", "tiny", 1, (0,), 1)
    assert (
        default.learners == default.price_learners == experiment_settings.PAPER_LEARNERS
    )  # the diagnostic: on request
    with pytest.raises(experiments.ExperimentError, match=r"unknown learner sac\+oracle"):
        experiments.resolve_budget(
            experiments.build_parser().parse_args(["--quick", "--learners", "sac+oracle"])
        )


def test_train_settlement_and_ablation_overrides_and_one_plain_run_for_every_eta():
    argv = ["--quick", "--train", "eta=1.5", "--train", "ent_coef=auto_0.1", "--settlements", "daily,24",
            "--ablations", "no-transfer,full"]  # fmt: skip
    b = experiments.resolve_budget(experiments.build_parser().parse_args(argv))
    assert b.train["eta"] == 1.5 and b.train["ent_coef"] == "auto_0.1" and b.settlements == ("daily", "24")
    assert b.ablations == ("no-transfer", "full")
    base = experiment_settings.budget("quick")
    spec = EnvSpec("tiny")
    # the shaper's settings change a shaped run, not a plain one: sac is trained once for every eta
    eta_only = dataclasses.replace(b, train={**base.train, "eta": 1.5})
    assert (
        experiments.train_job(eta_only, "sac", 0, spec).key()
        == experiments.train_job(base, "sac", 0, spec).key()
    )
    ent_only = dataclasses.replace(b, train={**base.train, "ent_coef": "auto_0.1"})  # SAC's, not TD3's
    assert experiments.train_job(ent_only, "td3+diffusion", 0, spec).key() == (
        experiments.train_job(base, "td3+diffusion", 0, spec).key()
    )
    assert (
        experiments.train_job(ent_only, "sac", 0, spec).key()
        != experiments.train_job(base, "sac", 0, spec).key()
    )
    assert experiments.train_job(b, "sac+diffusion", 0, spec).key() != (
        experiments.train_job(base, "sac+diffusion", 0, spec).key()
    )
    bad_args = (["--settlements", "weekly"], ["--settlements", "0"], ["--ablations", "no-gpu"], ["--train", "eta"],
                ["--train", "seed=3"], ["--train", "batch_size=x"], ["--train", "ent_coef=-1"], ["--train", "nope=1"])  # fmt: skip
    for bad in bad_args:
        with pytest.raises(experiments.ExperimentError):
            experiments.resolve_budget(experiments.build_parser().parse_args(["--quick", *bad]))


def test_compare_adds_a_paired_test_over_the_seeds_both_policies_ran():
    # b is a plus a seed effect that Welch's test cannot separate from noise; pairing by seed removes it.
    seeds = [0, 1, 2, 3]
    a = [10.0, 20.0, 30.0, 40.0]
    b = [v - 1.0 - 0.01 * i for i, v in enumerate(a)]
    table = pd.DataFrame(
        {
            "setting": "base",
            "policy": ["a"] * 4 + ["b"] * 4 + ["c"],
            "seed": seeds * 2 + [0],
            "utility": a + b + [5.0],
        }
    )
    text = report.compare(table, "a", "b", None)
    assert "Welch p = 0.92" in text and "not significant at 95% (n = 4 vs 4 seeds)" in text
    assert "paired by seed: 1.02" in text and ": significant at 95%, n = 4 seeds" in text
    assert "paired by seed" not in report.compare(table, "a", "c", None)  # one common seed: no paired test


def test_paired_differences_without_spread_are_not_called_a_test_result():
    same = report.paired_text([0.0, 0.0, 0.0])
    assert "no spread to test" in same and "significant" not in same
    spread = report.paired_text([1.0, 1.2, 0.9, 1.1])
    assert "p = " in spread and "significant at 95%" in spread
    assert "not testable" in report.paired_text([1.0])
