"""A Stable-Baselines3 replay buffer that keeps raw rewards in storage, adds ``eta`` times a learned shaping
term to every sampled reward, and records settlement periods so shapers can be fitted on whole periods."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from policies.shapers.base import PeriodBatch, RewardShaper, ShaperError


class ShapedReplayBuffer(ReplayBuffer):
    """``ReplayBuffer`` whose samples carry ``r_env + eta * shaping_term`` while ``self.rewards`` stays raw.

    A settlement period is the run of one env's transitions up to and including a slot whose info says
    ``settled`` (or, if the env never sets that key, whose reward is non-zero), or the episode's end. Each
    transition stores its period id and its index within the period, so complete periods can be sampled
    even after the ring buffer wrapped. The shaper is attached after construction (``attach_shaper``) and
    never pickled: only plain values go through ``replay_buffer_kwargs``, which SB3 saves with the model.
    """

    def __init__(
        self,
        *args: Any,
        eta: float = 0.4,
        gamma: float = 0.99,
        settle_key: str = "settled",
        hidden_key: str = "utility",
        **kwargs: Any,
    ):
        if kwargs.get("optimize_memory_usage"):
            raise ShaperError("ShapedReplayBuffer does not support optimize_memory_usage")
        super().__init__(*args, **kwargs)
        self.eta, self.gamma = float(eta), float(gamma)
        self.settle_key, self.hidden_key = settle_key, hidden_key
        shape = (self.buffer_size, self.n_envs)
        self.period_ids = np.zeros(shape, dtype=np.int64)  # 0 = never written
        self.period_step = np.zeros(shape, dtype=np.int64)
        self.closes = np.zeros(shape, dtype=bool)
        self.hidden = np.full(shape, np.nan, dtype=np.float32)
        self._next_id = 1
        self._cur_id = np.arange(1, self.n_envs + 1, dtype=np.int64)
        self._next_id += self.n_envs
        self._cur_step = np.zeros(self.n_envs, dtype=np.int64)
        self.shaper: RewardShaper | None = None
        self.shaping_enabled = False
        self.last_shaping: dict[str, float] = {}

    # --- live objects stay out of pickles -------------------------------------------------------------
    def attach_shaper(self, shaper: RewardShaper | None) -> None:
        self.shaper = shaper

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["shaper"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    # --- storage ----------------------------------------------------------------------------------------
    def add(self, obs, next_obs, action, reward, done, infos: list[dict[str, Any]]) -> None:
        pos = self.pos
        reward = np.asarray(reward, dtype=np.float64).reshape(self.n_envs)
        done = np.asarray(done, dtype=bool).reshape(self.n_envs)
        settled = np.array(
            [
                bool(info[self.settle_key]) if self.settle_key in info else r != 0
                for info, r in zip(infos, reward, strict=True)
            ]
        )
        self.period_ids[pos] = self._cur_id
        self.period_step[pos] = self._cur_step
        self.closes[pos] = settled | done
        self.hidden[pos] = [float(info.get(self.hidden_key, np.nan)) for info in infos]
        super().add(obs, next_obs, action, reward, done, infos)
        self._cur_step += 1
        for e in np.flatnonzero(self.closes[pos]):
            self._start_period(e)

    def _start_period(self, env_idx: int) -> None:
        self._cur_id[env_idx] = self._next_id
        self._next_id += 1
        self._cur_step[env_idx] = 0

    def break_periods(self) -> None:
        """Abandon every open period (e.g. on resume, when the env restarts): it can never be settled."""
        for e in range(self.n_envs):
            self._start_period(e)

    # --- shaped sampling --------------------------------------------------------------------------------
    def _get_samples(self, batch_inds: np.ndarray, env=None) -> ReplayBufferSamples:
        samples = super()._get_samples(batch_inds, env)
        if self.shaper is None or not self.shaping_enabled or self.eta == 0:
            return samples
        with torch.no_grad():
            self.shaper.eval()
            term = self.shaper.shaping_term(
                samples.observations, samples.actions, samples.next_observations, samples.dones, self.gamma
            ).reshape(-1, 1)
        self.last_shaping = {"term_mean": float(term.mean()), "term_std": float(term.std())}
        return samples._replace(rewards=samples.rewards + self.eta * term)

    # --- periods for fitting shapers --------------------------------------------------------------------
    def complete_period_ends(self) -> tuple[np.ndarray, np.ndarray]:
        """(position, env) of every stored period end whose whole period is still in the buffer."""
        upper = self.buffer_size if self.full else self.pos
        pos, env = np.nonzero(self.closes[:upper])
        steps = self.period_step[pos, env]
        start = (pos - steps) % self.buffer_size
        intact = (steps < self.buffer_size) & (self.period_ids[start, env] == self.period_ids[pos, env])
        if not self.full:
            intact &= pos - steps >= 0
        return pos[intact], env[intact]

    def n_complete_periods(self) -> int:
        return len(self.complete_period_ends()[0])

    def sample_periods(self, n_periods: int, max_slots: int = 64, env=None) -> PeriodBatch:
        """``n_periods`` complete periods (with replacement), at most ``max_slots`` random slots of each."""
        ends_pos, ends_env = self.complete_period_ends()
        if len(ends_pos) == 0:
            raise ShaperError("no complete settlement period in the replay buffer yet")
        pick = np.random.randint(0, len(ends_pos), size=n_periods)  # noqa: NPY002 (SB3 seeds the global RNG)
        lengths = self.period_step[ends_pos[pick], ends_env[pick]] + 1
        k = int(min(max_slots, lengths.max()))
        idx = np.zeros((n_periods, k), dtype=np.int64)
        mask = np.zeros((n_periods, k), dtype=np.float32)
        rtg = np.zeros((n_periods, k), dtype=np.float32)
        returns = np.zeros(n_periods, dtype=np.float64)
        for j, (p, e, n) in enumerate(zip(ends_pos[pick], ends_env[pick], lengths, strict=True)):
            full = (p - n + 1 + np.arange(n)) % self.buffer_size
            rewards = self.rewards[full, e].astype(np.float64)
            returns[j] = rewards.sum()
            # discounted reward-to-go to the period's end, for the potential shaper's target
            disc = self.gamma ** np.arange(n)
            to_go = np.cumsum((rewards * disc)[::-1])[::-1] / disc
            chosen = np.arange(n) if n <= k else np.sort(np.random.choice(n, size=k, replace=False))  # noqa: NPY002
            idx[j, : len(chosen)], mask[j, : len(chosen)], rtg[j, : len(chosen)] = (
                full[chosen],
                1,
                to_go[chosen],
            )
        envs = np.repeat(ends_env[pick][:, None], k, axis=1)
        dones = self.dones[idx, envs] * (1 - self.timeouts[idx, envs])
        t = self.to_torch
        return PeriodBatch(
            obs=t(self._normalize_obs(self.observations[idx, envs], env)),
            actions=t(self.actions[idx, envs]),
            next_obs=t(self._normalize_obs(self.next_observations[idx, envs], env)),
            dones=t(dones),
            rewards=t(self.rewards[idx, envs] * mask),
            reward_to_go=t(rtg),
            mask=t(mask),
            scale=t((lengths / mask.sum(axis=1)).astype(np.float32)),
            returns=t(returns.astype(np.float32)),
            lengths=t(lengths.astype(np.float32)),
            hidden=t(np.where(mask > 0, self.hidden[idx, envs], np.nan)),
        )

    def sample_transitions(self, n: int) -> tuple[torch.Tensor, ...]:
        """Raw (obs, actions, next_obs, dones, rewards, hidden) of ``n`` random stored transitions (diagnostics)."""
        upper = self.buffer_size if self.full else self.pos
        pos = np.random.randint(0, upper, size=n)  # noqa: NPY002 (SB3 seeds the global RNG)
        env = np.random.randint(0, self.n_envs, size=n)  # noqa: NPY002
        dones = self.dones[pos, env] * (1 - self.timeouts[pos, env])
        arrays = (
            self.observations[pos, env],
            self.actions[pos, env],
            self.next_observations[pos, env],
            dones,
            self.rewards[pos, env],
            self.hidden[pos, env],
        )
        return tuple(self.to_torch(a) for a in arrays)
