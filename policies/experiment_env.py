"""Twin variants for the experiments: scaled price volatility, a price level (energy weighing more), other model
mixes across ASPs and the paper's ablations (no transfer, fixed 30 steps, no renewables, no battery), built from a
scenario without editing it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from twin.scenario import Scenario, load_scenario, scenario_from_dict

MIXES = ("heterogeneous", "rotated", "homogeneous-first", "homogeneous-last")
#: Attributes that belong to the model an ASP runs (they move with it); the rest belong to the site.
MODEL_FIELDS = ("model", "gpu", "mode", "revenue_per_image", "relative_quality", "idle_power_w")


class VariantError(ValueError):
    """A variant that cannot be built (unknown mix, a step count outside the step set, ...)."""


@dataclass(frozen=True)
class EnvSpec:
    """A twin variant: the base scenario and what is changed; JSON-able and hashable (run keys)."""

    scenario: str
    reward_mode: str = "sparse"
    price_k: float = 1.0
    mix: str = "heterogeneous"
    no_transfer: bool = False
    fixed_steps: int | None = None
    no_renewables: bool = False
    no_battery: bool = False
    settlement_slots: int | None = None  # None: the scenario's own settlement period
    price_level: float = 1.0  # every price x this (the scenario's prices.level, applied on top of it)

    def to_dict(self) -> dict:
        """The fields; fields added later are left out at their default, so keys of runs made before hold."""
        out = dataclasses.asdict(self)
        if out["settlement_slots"] is None:
            del out["settlement_slots"]
        if out["price_level"] == 1.0:
            del out["price_level"]
        return out

    def scenario_only(self) -> bool:
        """Whether the variant is ``AIGCTwinEnv(build_scenario(self))`` as is: prices unscaled, actions free."""
        return self.price_k == 1.0 and not self.no_transfer and self.fixed_steps is None

    def key(self) -> str:
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]


def ablation_spec(base: EnvSpec, name: str) -> EnvSpec:
    """The spec of one of the paper's ablations (``full`` is the base itself)."""
    changes = {
        "full": {},
        "no-transfer": {"no_transfer": True},
        "fixed-30-steps": {"fixed_steps": 30},
        "no-renewables": {"no_renewables": True},
        "no-battery": {"no_battery": True},
    }
    if name not in changes:
        raise VariantError(f"unknown ablation {name!r}; choose one of {', '.join(changes)}")
    return dataclasses.replace(base, **changes[name])


def mixed_models(dcs: list[dict], mix: str) -> list[dict]:
    """Data-centre tables with the models re-assigned to sites; per-model attributes move with the model."""
    models = [{k: d[k] for k in MODEL_FIELDS if k in d} for d in dcs]
    if mix == "heterogeneous":
        return dcs
    if mix == "rotated":
        order = models[1:] + models[:1]
    elif mix == "homogeneous-first":
        order = [models[0]] * len(dcs)
    elif mix == "homogeneous-last":
        order = [models[-1]] * len(dcs)
    else:
        raise VariantError(f"unknown model mix {mix!r}; choose one of {', '.join(MIXES)}")
    out = []
    for site, model in zip(dcs, order, strict=True):
        row = {k: v for k, v in site.items() if k not in MODEL_FIELDS}
        out.append({**row, **model})
    return out


def resized(sc: Scenario) -> Scenario:
    """The scenario with each pool re-sized by ``twin.sizing`` for its (new) model at the target utilisation."""
    from twin.sizing import sizing_table

    data = sc.to_dict()
    for row, dc in zip(sizing_table(sc), data["datacenter"], strict=True):
        dc["gpus"] = max(1, int(row["gpus_for_target"]))
    return scenario_from_dict(data, sc.source)


def build_scenario(spec: EnvSpec) -> Scenario:
    """The base scenario with the spec's model mix, renewables and battery changes, price level and reward mode
    applied."""
    base = load_scenario(spec.scenario)
    data = base.to_dict()
    data["scenario"]["reward_mode"] = spec.reward_mode
    data["prices"]["level"] *= spec.price_level
    if spec.settlement_slots is not None:
        data["scenario"]["settlement_slots"] = spec.settlement_slots
    dcs = mixed_models(data["datacenter"], spec.mix)
    for dc in dcs:
        if spec.no_renewables:
            dc["pv_kw"], dc["wind_kw"] = 0.0, 0.0
        if spec.no_battery:
            dc["battery_kwh"], dc["battery_kw"] = 0.0, 0.0
    data["datacenter"] = dcs
    sc = scenario_from_dict(data, base.source)
    return resized(sc) if spec.mix != "heterogeneous" else sc


def scaled_prices(price: np.ndarray, k: float) -> np.ndarray:
    """p' = mean + k (p - mean), the mean taken per day and site: volatility scaled, daily mean kept."""
    mean = price.mean(axis=1, keepdims=True)
    return mean + k * (price - mean)


class RestrictedActions(gym.ActionWrapper):
    """Forces the ablated decisions: no transfer (every job served where it arrived) and/or fixed steps."""

    def __init__(self, env: gym.Env, no_transfer: bool, fixed_steps: int | None):
        super().__init__(env)
        base = env.unwrapped
        if fixed_steps is not None and fixed_steps not in base.step_set:
            raise VariantError(f"fixed steps {fixed_steps} not in the step set {base.step_set.tolist()}")
        self.no_transfer, self.fixed_steps = no_transfer, fixed_steps

    def action(self, action):
        base = self.env.unwrapped
        dec = base.decode_action(action)
        transfer = dec.transfer * (1 - np.eye(base.n_dc))
        if self.no_transfer:
            transfer = np.zeros_like(transfer)
        steps = dec.steps if self.fixed_steps is None else np.full(base.n_dc, self.fixed_steps)
        return base.encode_action(transfer, steps, dec.battery)


def make_env(spec: EnvSpec | dict) -> gym.Env:
    """The twin for ``spec`` (a TimeLimit-wrapped ``AIGCTwinEnv``, restricted where the spec ablates actions)."""
    from twin.env import AIGCTwinEnv
    from twin.exogenous import build_exogenous

    spec = spec if isinstance(spec, EnvSpec) else EnvSpec(**spec)
    sc = build_scenario(spec)
    data = build_exogenous(sc)
    if spec.price_k != 1.0:
        data = dataclasses.replace(data, price=scaled_prices(data.price, spec.price_k))
    env: gym.Env = gym.wrappers.TimeLimit(AIGCTwinEnv(sc, data=data), sc.slots_per_episode)
    if spec.no_transfer or spec.fixed_steps is not None:
        env = RestrictedActions(env, spec.no_transfer, spec.fixed_steps)
    return env


def register(spec: EnvSpec) -> str:
    """A gymnasium id for ``spec`` (deterministic, so a resumed training run finds it again)."""
    env_id = f"AIGCTwinExp-{spec.key()}-v0"
    if env_id not in gym.registry:
        gym.register(
            id=env_id, entry_point="policies.experiment_env:make_env", kwargs={"spec": spec.to_dict()}
        )
    return env_id
