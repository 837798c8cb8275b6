"""A Stable-Baselines3 replay buffer that keeps raw rewards in storage, shapes every sampled reward with a learned
term (added, or as a return-preserving redistribution of each settled period), and records settlement periods so
shapers can be fitted on whole periods."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from policies.shapers.base import PeriodBatch, RewardShaper, ShaperError

#: How the buffer turns a stored reward into the sampled one (``AgentConfig.reward_mix``).
REWARD_MIXES = ("add", "redistribute")


def reward_to_go(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """g_t = r_t + gamma g_{t+1} to the end of ``rewards`` (backwards, so gamma = 0 and long periods are exact,
    where dividing a discounted cumulative sum by gamma**t gave 0 / 0)."""
    out = np.empty(len(rewards), dtype=np.float64)
    acc = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = float(rewards[t]) + gamma * acc
        out[t] = acc
    return out


class ShapedReplayBuffer(ReplayBuffer):
    """``ReplayBuffer`` whose samples carry a shaped reward while ``self.rewards`` stays raw.

    ``mix="add"`` (the paper's): ``r_env + eta * term``. ``mix="redistribute"`` (return-equivalent, as RUDDER):
    a slot of a settled period of L slots that paid R gets ``R / L + eta * (term - the term's mean over the
    period)``, so the period's rewards still sum to R but no longer arrive as one spike at the settlement, and
    the shaper moves credit between its slots (eta = 1: all of r_hat's; eta = 0 or no shaper: the uniform
    spread ``R / L``, IRCR, Gangwani et al. 2020). Slots of a period not yet settled get ``eta * term``. The
    term's period means are refreshed after each shaper fit (``refresh_periods``), on at most ``max_slots``
    sampled slots per period.

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
        mix: str = "add",
        settle_key: str = "settled",
        hidden_key: str = "utility",
        items_key: str = "settled_items",
        meters_key: str = "meters",
        **kwargs: Any,
    ):
        if kwargs.get("optimize_memory_usage"):
            raise ShaperError("ShapedReplayBuffer does not support optimize_memory_usage")
        if mix not in REWARD_MIXES:
            raise ShaperError(f"unknown reward mix {mix!r}; choose one of {', '.join(REWARD_MIXES)}")
        super().__init__(*args, **kwargs)
        if mix == "redistribute" and self.n_envs != 1:  # SB3 draws the sampled envs inside _get_samples
            raise ShaperError(f"reward mix 'redistribute' needs one env, got {self.n_envs}")
        self.eta, self.gamma, self.mix = float(eta), float(gamma), mix
        self.settle_key, self.hidden_key = settle_key, hidden_key
        self.items_key, self.meters_key = items_key, meters_key
        # (buffer_size, n_envs, J) itemised settlements on their settlement slots (NaN elsewhere) and (..., M) every
        # slot's meter readings, see _store_vectors
        self.items: np.ndarray | None = None
        self.meters: np.ndarray | None = None
        shape = (self.buffer_size, self.n_envs)
        self.period_ids = np.zeros(shape, dtype=np.int64)  # 0 = never written
        self.period_step = np.zeros(shape, dtype=np.int64)
        self.closes = np.zeros(shape, dtype=bool)
        self.hidden = np.full(shape, np.nan, dtype=np.float32)
        # redistribute: per slot its settled period's mean reward R / L (NaN while the period is open) and the
        # period's mean shaping term at the last refresh (eta applies at sampling, so eta may change in training)
        self.period_mean = np.full(shape, np.nan, dtype=np.float32)
        self.period_term = np.zeros(shape, dtype=np.float32)
        self._next_id = 1
        self._cur_id = np.arange(1, self.n_envs + 1, dtype=np.int64)
        self._next_id += self.n_envs
        self._cur_step = np.zeros(self.n_envs, dtype=np.int64)
        self.shaper: RewardShaper | None = None
        self.shaping_enabled = False
        self.last_shaping: dict[str, float] = {}
        self.term_unscaled = True  # period_term holds the bare mean term (older pickles: eta times it)

    # --- live objects stay out of pickles -------------------------------------------------------------
    def attach_shaper(self, shaper: RewardShaper | None) -> None:
        # a hidden-reading shaper needs the sampled envs, which SB3 draws inside _get_samples
        if shaper is not None and shaper.reads_hidden and self.n_envs != 1:
            raise ShaperError(f"the {shaper.kind} shaper needs one env, got {self.n_envs}")
        self.shaper = shaper

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["shaper"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "mix" not in state:  # pickled before the reward mix existed: the paper's additive shaping
            self.mix = "add"
            self.period_mean = np.full(self.rewards.shape, np.nan, dtype=np.float32)
            self.period_term = np.zeros(self.rewards.shape, dtype=np.float32)
        if "items" not in state:  # pickled before settlements were itemised
            self.items, self.items_key = None, "settled_items"
        if "meters" not in state:  # pickled before meters were kept
            self.meters, self.meters_key = None, "meters"
        if "mix" in state and "term_unscaled" not in state:  # pickled when period_term held eta * the mean
            self.period_term = self.period_term / self.eta if self.eta else np.zeros_like(self.period_term)
        self.term_unscaled = True

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
        # in reward units (the twin's info holds EUR and the reward's scale)
        self.hidden[pos] = [
            float(info.get(self.hidden_key, np.nan)) * info.get("reward_scale", 1.0) for info in infos
        ]
        self.period_mean[pos], self.period_term[pos] = np.nan, 0.0
        self._store_vectors(pos, infos)
        super().add(obs, next_obs, action, reward, done, infos)
        self._cur_step += 1
        for e in np.flatnonzero(self.closes[pos]):
            if self.period_step[pos, e] < self.buffer_size:  # else its first slots were overwritten already
                slots = self.period_slots(pos, e)
                self.period_mean[slots, e] = self.rewards[slots, e].mean()
            self._start_period(e)

    def _store_vectors(self, pos: int, infos: list[dict[str, Any]]) -> None:
        """Keep the vectors ``info`` carries at ``pos``: an itemised settlement (``info[items_key]``, entries summing
        to the reward) on its settlement slot, a slot's meter readings (``info[meters_key]``) on every slot. Each
        array is made at the first vector seen, so buffers of envs that report none carry none."""
        for attr, key in (("items", self.items_key), ("meters", self.meters_key)):
            store = getattr(self, attr)
            if store is not None:
                store[pos] = np.nan
            for e, info in enumerate(infos):
                if key not in info:
                    continue
                values = np.asarray(info[key], dtype=np.float32).reshape(-1)
                if store is None:
                    store = np.full((self.buffer_size, self.n_envs, len(values)), np.nan, dtype=np.float32)
                    setattr(self, attr, store)
                if len(values) != store.shape[-1]:
                    raise ShaperError(
                        f"info[{key!r}] has {len(values)} entries, earlier ones {store.shape[-1]}"
                    )
                store[pos, e] = values

    def period_slots(self, end: int, env_idx: int) -> np.ndarray:
        """Buffer positions of the period that ends at ``end`` (oldest first)."""
        n = int(self.period_step[end, env_idx]) + 1
        return (end - n + 1 + np.arange(n)) % self.buffer_size

    def _start_period(self, env_idx: int) -> None:
        self._cur_id[env_idx] = self._next_id
        self._next_id += 1
        self._cur_step[env_idx] = 0

    def break_periods(self) -> None:
        """Abandon every open period (e.g. on resume, when the env restarts): it can never be settled."""
        for e in range(self.n_envs):
            self._start_period(e)

    # --- shaped sampling --------------------------------------------------------------------------------
    @property
    def shaping_active(self) -> bool:
        return self.shaper is not None and self.shaping_enabled

    def _get_samples(self, batch_inds: np.ndarray, env=None) -> ReplayBufferSamples:
        samples = super()._get_samples(batch_inds, env)
        shaping = self.shaping_active and self.eta != 0
        if self.mix == "add" and not shaping:
            return samples
        term = torch.zeros_like(samples.rewards)
        if shaping:
            hidden = self.to_torch(self.hidden[batch_inds, 0]) if self.shaper.reads_hidden else None
            term = self.shaping_terms(
                samples.observations, samples.actions, samples.next_observations, samples.dones, hidden,
                self.meters_at(batch_inds, 0),
            ).reshape(-1, 1)  # fmt: skip
            self.last_shaping = {"term_mean": float(term.mean()), "term_std": float(term.std())}
        if self.mix == "add":
            return samples._replace(rewards=samples.rewards + self.eta * term)
        mean = self.period_mean[batch_inds, 0]
        offset = np.where(np.isnan(mean), 0.0, mean - shaping * self.eta * self.period_term[batch_inds, 0])
        offset = self.to_torch(offset.astype(np.float32)).reshape(-1, 1)
        return samples._replace(rewards=offset + self.eta * term)

    def shaping_terms(
        self, obs, actions, next_obs, dones, hidden: torch.Tensor | None, meters: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The attached shaper's term per transition, shape (B,); a ``reads_hidden`` shaper's is ``hidden``
        (NaN, a slot without the value, reads 0). ``meters``: the transitions' meter readings, for a shaper
        conditioned on them."""
        if self.shaper is None:
            raise ShaperError("no shaper attached to the replay buffer")
        if self.shaper.reads_hidden:
            return torch.nan_to_num(hidden.reshape(-1), nan=0.0)
        with torch.no_grad():
            self.shaper.eval()
            return self.shaper.shaping_term(obs, actions, next_obs, dones, self.gamma, meters)

    def meters_at(self, pos: np.ndarray, env: int | np.ndarray) -> torch.Tensor | None:
        """The stored meter readings at (``pos``, ``env``) (a slot without any reads 0), or None where the buffer
        keeps none or the attached shaper does not read them."""
        if self.meters is None or self.shaper is None or not self.shaper.meters:
            return None
        return self.to_torch(np.nan_to_num(self.meters[pos, env], nan=0.0))

    def refresh_periods(self, max_slots: int = 64) -> None:
        """Redistribute: each stored settled period's mean shaping term, on at most ``max_slots`` random slots
        (after a shaper fit; the sampled rewards then sum to the settled amounts over each period again). A period
        the ring has partly overwritten gets the mean over its surviving slots, so they stay centred on the current
        shaper's term rather than on the one of its last refresh while it was whole."""
        if self.mix != "redistribute" or self.shaper is None:
            return
        periods = self._settled_periods()
        rng = np.random  # the global RNG, which SB3 seeds
        chosen = [s if len(s) <= max_slots else rng.choice(s, max_slots, replace=False) for s in periods]
        if not chosen:
            return
        idx = np.concatenate(chosen)
        t = self.to_torch
        term = self.shaping_terms(
            t(self.observations[idx, 0]), t(self.actions[idx, 0]), t(self.next_observations[idx, 0]),
            t(self.dones[idx, 0] * (1 - self.timeouts[idx, 0])), t(self.hidden[idx, 0]), self.meters_at(idx, 0),
        ).cpu().numpy()  # fmt: skip
        bounds = np.cumsum([0] + [len(c) for c in chosen])
        for slots, lo, hi in zip(periods, bounds[:-1], bounds[1:], strict=True):
            self.period_term[slots, 0] = term[lo:hi].mean()

    def _settled_periods(self) -> list[np.ndarray]:
        """Buffer positions (env 0) of every settled period still in the buffer, whole or the slots of it the ring
        has not overwritten yet; oldest period first, each period's slots in position order (not time order where
        a period crosses the ring's end: the means taken over them do not care)."""
        settled = np.flatnonzero(~np.isnan(self.period_mean[:, 0]))
        ids = self.period_ids[settled, 0]
        order = np.argsort(ids, kind="stable")
        return np.split(settled[order], np.flatnonzero(np.diff(ids[order])) + 1) if len(settled) else []

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

    def sample_periods(
        self,
        n_periods: int,
        max_slots: int = 64,
        env=None,
        ends: tuple[np.ndarray, np.ndarray] | None = None,
        pick: np.ndarray | None = None,
    ) -> PeriodBatch:
        """``n_periods`` complete periods (with replacement), at most ``max_slots`` random slots of each; drawn
        from ``ends`` ((position, env) of period ends, as ``complete_period_ends`` gives) when given; ``pick``:
        these indices into the ends instead of a random draw."""
        ends_pos, ends_env = self.complete_period_ends() if ends is None else ends
        if len(ends_pos) == 0:
            raise ShaperError("no complete settlement period in the replay buffer yet")
        if pick is None:
            pick = np.random.randint(0, len(ends_pos), size=n_periods)  # noqa: NPY002 (SB3 seeds the global RNG)
        n_periods = len(pick)
        lengths = self.period_step[ends_pos[pick], ends_env[pick]] + 1
        k = int(min(max_slots, lengths.max()))
        idx = np.zeros((n_periods, k), dtype=np.int64)
        mask = np.zeros((n_periods, k), dtype=np.float32)
        rtg = np.zeros((n_periods, k), dtype=np.float32)
        returns = np.zeros(n_periods, dtype=np.float64)
        for j, (p, e, n) in enumerate(zip(ends_pos[pick], ends_env[pick], lengths, strict=True)):
            full = self.period_slots(p, e)
            rewards = self.rewards[full, e].astype(np.float64)
            returns[j] = rewards.sum()
            # discounted reward-to-go to the period's end, for the potential shaper's target
            to_go = reward_to_go(rewards, self.gamma)
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
            items=None if self.items is None else t(self.items[ends_pos[pick], ends_env[pick]]),
            meters=None
            if self.meters is None
            else t(np.where(mask[..., None] > 0, self.meters[idx, envs], 0.0)),
        )

    def whole_periods(self, ends: tuple[np.ndarray, np.ndarray] | None = None) -> PeriodBatch:
        """Every complete period in the buffer (or of ``ends``, as ``sample_periods`` takes them) once, all its
        slots, in the order they were lived."""
        ends = self.complete_period_ends() if ends is None else ends
        order = np.argsort(self.period_ids[ends[0], ends[1]], kind="stable")
        return self.sample_periods(len(order), self.buffer_size, ends=ends, pick=order)

    def sample_transitions(self, n: int) -> tuple[torch.Tensor | None, ...]:
        """Raw (obs, actions, next_obs, dones, rewards, hidden, meters) of ``n`` random stored transitions
        (diagnostics; meters as ``meters_at``)."""
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
        return (*(self.to_torch(a) for a in arrays), self.meters_at(pos, env))
