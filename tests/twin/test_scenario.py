"""Scenario loading: the bundled files validate, bad fields fail naming the field, dumps round-trip."""

from __future__ import annotations

import re
import tomllib

import numpy as np
import pytest

from twin.scenario import DEFAULT_STEPS, ScenarioError, load_scenario, scenario_from_dict, with_overrides


def _doc(name: str = "tiny") -> dict:
    return load_scenario(name).to_dict()


def test_bundled_scenarios_load():
    default, tiny = load_scenario("default"), load_scenario("tiny")
    assert default.n_dc == 3 and default.slots_per_episode == 288
    assert default.steps == DEFAULT_STEPS == (6, 10, 14, 18, 22, 26, 30, 34, 38, 42)
    assert [d.model for d in default.datacenters] == ["sd-1.5", "sdxl", "sd3.5-medium"]
    assert tiny.n_dc == 2 and tiny.slots_per_episode * tiny.slot_s == 86400


def test_dump_round_trips(tmp_path):
    sc = load_scenario("default")
    path = sc.dump(tmp_path / "used.toml")
    again = scenario_from_dict(tomllib.loads(path.read_text()), sc.source)
    assert again == sc


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["datacenter"][1].update(gpus=0), "datacenter[1].gpus"),
        (lambda d: d["datacenter"][0].update(battery_kwh="big"), "datacenter[0].battery_kwh"),
        (lambda d: d["datacenter"][0].update(soc_init=0.95), "datacenter[0].soc_init"),
        (lambda d: d["datacenter"][0].update(colour="red"), "datacenter[0].colour"),
        (lambda d: d["scenario"].update(reward_mode="medium"), "scenario.reward_mode"),
        (lambda d: d["scenario"].update(slot_s=7), "scenario.slot_s"),
        (lambda d: d["scenario"].update(steps=[10, 6]), "scenario.steps"),
        (lambda d: d["money"].pop("penalty_drop_per_job"), "money.penalty_drop_per_job"),
        (lambda d: d["datacenter"][0].update(arrival_share=0.9), "datacenter.arrival_share"),
        (lambda d: d["calendar"].update(start="June"), "calendar.start"),
        (lambda d: d.pop("jobs"), "jobs"),
    ],
)
def test_bad_field_is_named(edit, field):
    doc = _doc()
    edit(doc)
    with pytest.raises(ScenarioError, match=re.escape(f"field {field!r}")):
        scenario_from_dict(doc, "test.toml")


def test_unknown_scenario_name():
    with pytest.raises(ScenarioError, match="no such scenario"):
        load_scenario("no-such-scenario")


def test_override_validates():
    sc = with_overrides(load_scenario("tiny"), reward_mode="sparse")
    assert sc.reward_mode == "sparse"
    with pytest.raises(ScenarioError, match="reward_mode"):
        with_overrides(sc, reward_mode="sometimes")


def test_broken_toml_is_one_clear_error(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[scenario\nname = 'x'\n")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(path)


def test_custom_step_set_reaches_the_env(tmp_path):
    from tests.twin.conftest import FakeCard, synthetic_data
    from twin.env import AIGCTwinEnv

    sc = with_overrides(load_scenario("tiny"), steps=[10, 20, 30])
    env = AIGCTwinEnv(sc, data=synthetic_data(sc), cards=[FakeCard(), FakeCard()])
    assert env.step_set.tolist() == [10, 20, 30]
    assert env.decode_action(np.ones(env.action_space.shape)).steps.tolist() == [30, 30]


def test_default_weather_is_a_known_site():
    # A data centre without a `weather` key gets the default, which must name a built-in TMY3 site.
    from traces.renewables import tmy3_path

    doc = _doc()
    del doc["datacenter"][0]["weather"]
    sc = scenario_from_dict(doc, "<test>")
    assert tmy3_path(sc.datacenters[0].weather).is_file()
