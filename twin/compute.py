"""The compute side of one slot: transfers, queues, dynamic batching, latency, deadlines, quality and GPU
energy, vectorised over data centres, job ages, job classes and origins (no per-job Python loop)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.energy import J_PER_KWH as J_PER_KWH  # re-exported: twin.energy owns the unit


@dataclass(frozen=True)
class ComputeTables:
    """Per-DC costs precomputed from the model cards; padding is NaN.

    ``lat_s[i, s, c]`` and ``energy_j[i, s, c]`` are for one pipeline call of ``batch[i, c]`` images at step
    index s. A job of ``k`` images served while the DC forms batches of ``batch[i, c]`` runs in calls of
    ``b_eff = min(max(batch[i, c], k), max batch)`` images (a request's images are never split below its
    own size): ``img_s`` / ``img_j`` (N, S, B, K) are GPU-seconds and joules per image at that call size and
    ``job_call_s`` (N, S, B, K) is the time of the calls one job needs (``ceil(k / b_eff)`` of them).
    """

    steps: np.ndarray  # (S,) step counts
    images: np.ndarray  # (K,) images per request of each job class
    batch: np.ndarray  # (N, B) batch sizes, 0 where a card has fewer sizes
    lat_s: np.ndarray  # (N, S, B)
    energy_j: np.ndarray  # (N, S, B)
    img_s: np.ndarray  # (N, S, B, K)
    img_j: np.ndarray  # (N, S, B, K)
    job_call_s: np.ndarray  # (N, S, B, K)
    energy_gross: np.ndarray  # (N,) bool: card energy includes the idle floor
    idle_w: np.ndarray  # (N,) idle power of one GPU
    quality: np.ndarray  # (N, S) delivered quality (relative level x card share)
    gpus: np.ndarray  # (N,) GPUs per DC

    @property
    def n_dc(self) -> int:
        return len(self.gpus)

    def capacity_images(self, steps_idx: np.ndarray, slot_s: float) -> np.ndarray:
        """(N, B) images each DC can serve in one slot when every call holds ``batch[i, c]`` images."""
        lat = self.lat_s[np.arange(self.n_dc), steps_idx]
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.gpus[:, None] * slot_s * self.batch / lat


def _class_costs(card, steps: np.ndarray, sizes: np.ndarray, images: np.ndarray, nb: int):
    """(S, B, K) per-image seconds, per-image joules and per-job call time for one card."""
    shape = (len(steps), nb, len(images))
    img_s, img_j, job_s = (np.full(shape, np.nan) for _ in range(3))
    b_eff = np.minimum(np.maximum(sizes[:, None], images[None, :]), sizes.max())  # (B', K)
    calls = np.ceil(images[None, :] / b_eff)
    lat = card.batch_latency_s(steps[:, None, None], b_eff[None])
    en = card.batch_energy_j(steps[:, None, None], b_eff[None])
    nb_card = len(sizes)
    img_s[:, :nb_card] = lat / b_eff
    img_j[:, :nb_card] = en / b_eff
    job_s[:, :nb_card] = calls * lat
    return img_s, img_j, job_s


def build_tables(cards, steps, images, gpus, relative_quality, idle_fallback_w) -> ComputeTables:
    """Tables from one card per DC (objects with the ``twin.cards.ModelCard`` API)."""
    steps = np.asarray(steps, dtype=float)
    images = np.asarray(images, dtype=float)
    n, nb = len(cards), max(len(c.batch_sizes) for c in cards)
    batch = np.zeros((n, nb))
    lat = np.full((n, len(steps), nb), np.nan)
    en = np.full_like(lat, np.nan)
    per_class = []
    for i, card in enumerate(cards):
        b = np.asarray(card.batch_sizes, dtype=float)
        batch[i, : len(b)] = b
        lat[i, :, : len(b)] = card.batch_latency_s(steps[:, None], b[None, :])
        en[i, :, : len(b)] = card.batch_energy_j(steps[:, None], b[None, :])
        per_class.append(_class_costs(card, steps, b, images, nb))
    idle = [
        c.idle_power_w if c.idle_power_w is not None else f
        for c, f in zip(cards, idle_fallback_w, strict=True)
    ]
    if any(v is None for v in idle):
        raise ValueError(
            "a card has no idle power and the scenario gives no idle_power_w for its data centre"
        )
    gross = np.array([getattr(c, "energy_basis", "gross") == "gross" for c in cards])
    qual = np.stack([np.asarray(c.quality(steps), dtype=float) for c in cards])
    img_s, img_j, job_s = (np.stack(arrs) for arrs in zip(*per_class, strict=True))
    return ComputeTables(
        steps=steps,
        images=images,
        batch=batch,
        lat_s=lat,
        energy_j=en,
        img_s=img_s,
        img_j=img_j,
        job_call_s=job_s,
        energy_gross=gross,
        idle_w=np.asarray(idle, dtype=float),
        quality=qual * np.asarray(relative_quality, dtype=float)[:, None],
        gpus=np.asarray(gpus, dtype=float),
    )


def split_transfers(arrivals: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Integer split X[o, j, k] of arrivals[o, k] by shares[o, j] (rows sum to 1), by largest remainder,
    so that X.sum(axis=1) == arrivals exactly."""
    raw = shares[:, :, None] * arrivals[:, None, :]
    base = np.floor(raw)
    left = arrivals - base.sum(axis=1)  # (O, K) jobs still to place, < number of destinations
    order = np.argsort(base - raw, axis=1, kind="stable")  # largest remainder first
    rank = np.argsort(order, axis=1, kind="stable")
    return (base + (rank < left[:, None, :])).astype(np.int64)


def choose_batch(need_s: np.ndarray, gpu_s: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """Index of the smallest batch size at which the queued work (GPU-seconds, (N, B)) fits the pool's
    GPU-seconds in the slot, else of the largest batch size (dynamic batching batches only as needed)."""
    valid = batch > 0
    ok = valid & (need_s <= gpu_s[:, None])  # NaN (padding) compares False
    largest = valid.sum(axis=1) - 1
    return np.where(ok.any(axis=1), ok.argmax(axis=1), largest)


def serve_oldest_first(queue: np.ndarray, cost: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """Jobs served Y[i, a, k, o] <= queue: whole age buckets, oldest first, while the budget lasts (``cost``
    (N, K) per job of each class, budget (N,) in the same unit); the bucket where it runs out is served in
    the same share for every cell, rounded down to whole jobs."""
    per_age = np.einsum("iako,ik->ia", queue, cost)  # (N, A+1)
    older = np.cumsum(per_age[:, ::-1], axis=1)[:, ::-1] - per_age  # cost of strictly older buckets
    # An empty bucket gets share 0 (its jobs are none); the max() only avoids dividing by zero.
    frac = np.clip((budget[:, None] - older) / np.maximum(per_age, 1e-12), 0.0, 1.0)
    served = np.floor(frac[:, :, None, None] * queue + 1e-9).astype(np.int64)
    return np.minimum(served, queue)


@dataclass
class SlotCompute:
    """What the compute side did in one slot (arrays per DC unless said otherwise)."""

    transfers: np.ndarray  # (O, J, K) jobs sent from origin o to server j (diagonal: kept)
    served: np.ndarray  # (N, A+1, K, O) jobs served by age, class and origin
    late: np.ndarray  # (N, A+1, K, O) of which late
    dropped: np.ndarray  # (N, K, O) jobs dropped (waited the maximum and still unserved)
    queue: np.ndarray  # (N, A+1, K, O) the queue after the slot (aged)
    offered_images: np.ndarray  # (N,)
    served_images: np.ndarray  # (N,)
    batch: np.ndarray  # (N,) batch size formed
    steps: np.ndarray  # (N,) step count used
    quality: np.ndarray  # (N,) delivered quality
    busy_s: np.ndarray  # (N,) busy GPU-seconds
    gpu_j: np.ndarray  # (N,) GPU energy in joules (idle included)
    utilisation: np.ndarray  # (N,) busy / (GPUs x slot)


def slot_compute(
    tables: ComputeTables,
    queue: np.ndarray,
    arrivals: np.ndarray,
    shares: np.ndarray,
    steps_idx: np.ndarray,
    deadline_s: np.ndarray,
    transfer_latency_s: np.ndarray,
    slot_s: float,
    queueing_factor: float,
) -> SlotCompute:
    """Run one slot: ``queue`` (N, A+1, K, O) waiting jobs, ``arrivals`` (O, K) new requests, ``shares``
    (O, J) transfer shares with rows summing to 1, ``steps_idx`` (N,) chosen step indices."""
    rows = np.arange(tables.n_dc)
    images = tables.images
    x = split_transfers(arrivals, shares)
    q = queue.copy()
    q[:, 0] = x.transpose(1, 2, 0)  # (J, K, O): age 0 holds this slot's new jobs at their server
    img_k = np.einsum("iako,k->ik", q, images)  # (N, K) queued images per class
    sec = tables.img_s[rows, steps_idx]  # (N, B, K) GPU-seconds per image at each batch size
    gpu_s = tables.gpus * slot_s
    need = np.einsum("ick,ik->ic", sec, img_k)  # NaN for padding sizes, which choose_batch never picks
    c = choose_batch(need, gpu_s, tables.batch)
    job_s = sec[rows, c] * images  # (N, K) GPU-seconds per job
    served = serve_oldest_first(q, job_s, gpu_s)
    ages = np.arange(q.shape[1]) * slot_s
    # Latency = waiting slots + transfer + the job's own calls, stretched by the queueing factor.
    run = queueing_factor * tables.job_call_s[rows, steps_idx, c]  # (N, K)
    lat = ages[None, :, None, None] + transfer_latency_s.T[:, None, None, :] + run[:, None, :, None]
    late = np.where(lat > deadline_s[None, None, :, None], served, 0)
    served_jobs = served.sum(axis=(1, 3))  # (N, K)
    busy = np.einsum("ik,ik->i", served_jobs, job_s)
    dyn = np.einsum("ik,ik->i", served_jobs * images, tables.img_j[rows, steps_idx, c])
    idle_s = np.where(tables.energy_gross, gpu_s - busy, gpu_s)
    left = q - served
    aged = np.zeros_like(q)
    aged[:, 1:] = left[:, :-1]
    return SlotCompute(
        transfers=x,
        served=served,
        late=late,
        dropped=left[:, -1],
        queue=aged,
        offered_images=img_k.sum(axis=1).astype(float),
        served_images=(served_jobs @ images).astype(float),
        batch=tables.batch[rows, c],
        steps=tables.steps[steps_idx],
        quality=tables.quality[rows, steps_idx],
        busy_s=busy,
        gpu_j=dyn + tables.idle_w * np.maximum(idle_s, 0.0),
        utilisation=busy / gpu_s,
    )


@dataclass(frozen=True)
class RelaxationBounds:
    """Best cases over every call size the env can form, per (DC, step index, class): for an LP upper bound."""

    img_s_min: np.ndarray  # (N, S, K) least GPU-seconds per image
    img_j_above_idle_min: np.ndarray  # (N, S, K) least joules per image above the idle floor
    img_j_above_idle_max: np.ndarray  # (N, S, K) most joules per image above the idle floor
    on_time: np.ndarray  # (N, S, A+1, K, O) True where some call size meets the deadline


def relaxation_bounds(
    tables: ComputeTables,
    slot_s: float,
    max_wait_slots: int,
    deadline_s: np.ndarray,
    transfer_latency_s: np.ndarray,
    queueing_factor: float,
) -> RelaxationBounds:
    """Per-image costs and deadline feasibility minimised (or maximised) over the batch sizes the env may
    form, from the same tables the env runs on: the env's cost for any served image lies within them."""
    idle = np.where(tables.energy_gross, tables.idle_w, 0.0)[:, None, None, None]
    above = (
        tables.img_j - idle * tables.img_s
    )  # (N, S, B, K); gross cards: the idle floor moves to P_idle G Δ
    ages = np.arange(max_wait_slots + 1) * slot_s
    run = queueing_factor * tables.job_call_s  # (N, S, B, K)
    lat = ages[None, None, :, None, None, None] + run[:, :, None, :, :, None]
    lat = lat + transfer_latency_s.T[:, None, None, None, None, :]  # (N, S, A+1, B, K, O)
    ok = lat <= deadline_s[None, None, None, None, :, None]  # NaN padding compares False
    return RelaxationBounds(
        img_s_min=np.nanmin(tables.img_s, axis=2),
        img_j_above_idle_min=np.nanmin(above, axis=2),
        img_j_above_idle_max=np.nanmax(above, axis=2),
        on_time=ok.any(axis=3),
    )
