"""Compute side: integer transfer split, batch choice, oldest-first service, latency and energy bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest

from tests.twin.conftest import FakeCard
from twin import compute

IMAGES = np.array([1, 2, 4, 8])


def _tables(gpus=(2, 3)):
    cards = [FakeCard(), FakeCard(lat=(0.2, 0.1, 0.04, 0.02))]
    return compute.build_tables(cards, (6, 10, 30), IMAGES, gpus, (0.9, 1.0), (None, None))


def test_split_transfers_keeps_every_job():
    rng = np.random.default_rng(3)
    arrivals = rng.integers(0, 50, size=(3, 4))
    shares = rng.dirichlet(np.ones(3), size=3)
    x = compute.split_transfers(arrivals, shares)
    assert (x >= 0).all()
    np.testing.assert_array_equal(x.sum(axis=1), arrivals)
    assert np.abs(x - shares[:, :, None] * arrivals[:, None, :]).max() < 1.0


def test_choose_batch_smallest_that_keeps_up():
    t = _tables()
    gpu_s = t.gpus * 300.0
    one = np.array([1.0, 0.0, 0.0, 0.0])  # only one-image jobs
    sec = t.img_s[np.arange(2), [2, 2]]  # (N, B, K) at 30 steps
    # Just more one-image work than batch 1 can do in the slot: batch 2 is the smallest that keeps up.
    img = np.stack([one * (gpu_s[0] / sec[0, 0, 0] + 1), one * 1e9])
    need = np.einsum("ick,ik->ic", sec, img)
    idx = compute.choose_batch(need, gpu_s, t.batch)
    assert t.batch[0, idx[0]] == 2
    assert t.batch[1, idx[1]] == 8  # overloaded: the largest batch


def test_multi_image_jobs_run_as_one_call():
    t = _tables()
    card = FakeCard()
    # At batch size 1, an 8-image job is one call of 8 images, not 8 calls of 1.
    assert t.job_call_s[0, 2, 0, 3] == pytest.approx(card.batch_latency_s(30, 8))
    assert t.img_j[0, 2, 0, 3] == pytest.approx(card.batch_energy_j(30, 8) / 8)
    assert t.img_j[0, 2, 0, 0] == pytest.approx(card.batch_energy_j(30, 1))


def test_serve_oldest_first_and_whole_jobs():
    q = np.zeros((1, 3, 2, 1), dtype=np.int64)
    q[0, :, 0, 0] = [10, 10, 10]  # 10 one-image jobs at each age
    served = compute.serve_oldest_first(q, np.array([[1.0, 4.0]]), np.array([15.0]))
    assert served[0, 2, 0, 0] == 10 and served[0, 1, 0, 0] == 5 and served[0, 0, 0, 0] == 0
    assert (served <= q).all()


def test_slot_compute_conserves_and_accounts_energy():
    t = _tables()
    n, k = 2, IMAGES
    queue = np.zeros((n, 3, 4, n), dtype=np.int64)
    arrivals = np.array([[400, 50, 80, 60], [5, 1, 2, 1]])
    shares = np.array([[0.7, 0.3], [0.0, 1.0]])
    steps = np.array([2, 0])
    out = compute.slot_compute(
        t, queue, arrivals, shares, steps, 30 + 5.0 * k, 0.5 * (1 - np.eye(n)), 300.0, 1.5
    )
    # Every arrived job is served, dropped or waiting, exactly once, per origin.
    per_origin = out.served.sum(axis=(0, 1, 2)) + out.dropped.sum(axis=(0, 1)) + out.queue.sum(axis=(0, 1, 2))
    np.testing.assert_array_equal(per_origin, arrivals.sum(axis=1))
    assert (out.busy_s <= t.gpus * 300.0 + 1e-9).all()
    # Gross energy: each served image at its call size, plus idle power for the time no call runs.
    rows = np.arange(n)
    c = [list(t.batch[i]).index(out.batch[i]) for i in rows]
    jobs = out.served.sum(axis=(1, 3))
    e_call = np.einsum("ik,ik->i", jobs * k, t.img_j[rows, steps, c])
    busy = np.einsum("ik,ik->i", jobs * k, t.img_s[rows, steps, c])
    np.testing.assert_allclose(out.busy_s, busy)
    np.testing.assert_allclose(out.gpu_j, e_call + t.idle_w * (t.gpus * 300.0 - busy))
    assert (out.late <= out.served).all()
    np.testing.assert_allclose(out.quality, t.quality[rows, steps])


def test_overload_drops_after_max_wait():
    t = _tables(gpus=(1, 1))
    k = IMAGES
    q = np.zeros((2, 2, 4, 2), dtype=np.int64)
    big = np.array([[5000, 0, 0, 0], [0, 0, 0, 0]])
    keep = np.eye(2)
    total_dropped = 0
    for _ in range(4):
        out = compute.slot_compute(t, q, big, keep, np.array([2, 2]), 35 + 0 * k, 0 * keep, 300.0, 1.5)
        q = out.queue
        total_dropped += out.dropped.sum()
    assert total_dropped > 0
    assert (out.utilisation[0] > 0.95) and out.batch[0] == 8


def test_relaxation_bounds_contain_every_env_slot():
    t = _tables()
    n, k = 2, IMAGES
    deadline, tau = 30 + 5.0 * k, 0.5 * (1 - np.eye(n))
    rb = compute.relaxation_bounds(t, 300.0, 2, deadline, tau, 1.5)
    rng = np.random.default_rng(7)
    q = np.zeros((n, 3, 4, n), dtype=np.int64)
    for _ in range(30):
        steps = rng.integers(0, 3, n)
        arrivals = rng.poisson(rng.uniform(5, 400), size=(n, 4))
        out = compute.slot_compute(
            t, q, arrivals, rng.dirichlet(np.ones(n), n), steps, deadline, tau, 300.0, 1.5
        )
        q = out.queue
        img = out.served.sum(axis=(1, 3)) * k  # (N, K) images served per class
        rows = np.arange(n)
        assert (out.busy_s >= (img * rb.img_s_min[rows, steps]).sum(axis=1) - 1e-6).all()
        above = out.gpu_j - t.idle_w * t.gpus * 300.0
        assert (above >= (img * rb.img_j_above_idle_min[rows, steps]).sum(axis=1) - 1e-6).all()
        assert (above <= (img * rb.img_j_above_idle_max[rows, steps]).sum(axis=1) + 1e-6).all()
        # Jobs the bound calls late are late in the env too.
        never = ~rb.on_time[rows, steps]  # (N, A+1, K, O)
        assert (out.late >= np.where(never, out.served, 0)).all()
