"""The clairvoyant oracle's linear program (docs/twin-model.md §6): one day of job flows, step counts, drops
and the full energy side with batteries, built with scipy.sparse and solved by HiGHS (highspy); data in, plan out.

Variables (all continuous, >= 0 unless said otherwise):

* ``y[c, j, a, s]`` jobs of arrival cell c = (slot t', origin o, class k) served at DC j at age a (in slot
  t' + a) with s denoising steps; ``z[c]`` jobs of the cell never served (dropped, or still queued when the
  day ends); ``M[t, j, s]`` images served by DC j in slot t at s steps (a bookkeeping copy of the y sums).
* per slot and site: facility load ``Ld``, renewables used ``r``, grid import for the load ``gl``, battery
  discharge ``d``, charge from surplus ``cs`` and from the grid ``cg``, export ``x``, stored energy after
  the slot ``e`` (bounded by the state-of-charge window).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from twin.accounting import KWH_PER_MWH, battery_settlement

_ENERGY_VARS = (
    "load",
    "renew",
    "grid_load",
    "discharge",
    "charge_surplus",
    "charge_grid",
    "export",
    "stored",
)


class OracleError(ValueError):
    """The oracle's problem is malformed or HiGHS found no optimum (message says which)."""


@dataclass(frozen=True)
class OracleProblem:
    """Everything the LP needs about one episode; arrays are (T slots, N sites) unless said otherwise."""

    slot_s: float
    steps: np.ndarray  # (S,) step counts
    images: np.ndarray  # (K,) images per job of each class
    arrivals: np.ndarray  # (T, O, K) jobs arriving per slot, origin, class (O == N)
    max_wait: int  # A: a job unserved at age A is dropped
    revenue_per_image: np.ndarray  # (O,) by origin
    quality: np.ndarray  # (N, S) delivered quality
    min_quality: float
    penalty_late: float
    penalty_quality: float
    penalty_drop: float
    transfer_cost_per_image: float
    late: np.ndarray  # (N, S, A+1, K, O) bool: late even with the most favourable batch
    image_time_s: np.ndarray  # (N, S) best-case GPU-seconds per image
    image_energy_lo_j: np.ndarray  # (N, S) least GPU joules per image above the idle floor
    image_energy_hi_j: np.ndarray  # (N, S) most GPU joules per image above the idle floor
    base_energy_j: np.ndarray  # (N,) idle floor of the whole pool over a slot
    gpu_seconds: np.ndarray  # (N,) GPUs x slot length
    kwh_per_gpu_j: np.ndarray  # (T, N) facility kWh per GPU joule: twin.energy.facility_kwh(1 J)
    renewable_kwh: np.ndarray
    price: np.ndarray  # currency per MWh
    export_price: np.ndarray
    battery_kwh_per_slot: np.ndarray  # (N,) rated power x slot hours
    eta_charge: np.ndarray  # (N,)
    eta_discharge: np.ndarray  # (N,)
    stored_min: np.ndarray  # (N,) kWh
    stored_max: np.ndarray  # (N,)
    stored_init: np.ndarray  # (N,)
    grid_charging: np.ndarray  # (N,) bool
    export_limit_kwh: np.ndarray  # (N,) per slot (inf: no limit)
    settle_price: np.ndarray  # (N,) the day's mean price, values the battery's end-of-day change

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """(T, N, S, A+1, K)."""
        t, n, k = self.arrivals.shape
        return t, n, len(self.steps), self.max_wait + 1, k


@dataclass
class OracleSolution:
    """The LP's optimum (an upper bound on the env's episode utility), its terms, and the plan it implies."""

    value: float
    totals: dict[
        str, float
    ]  # the env's info names: revenue, penalty_*, energy_cost, ... and job/energy counts
    slot_utility: np.ndarray  # (T,) utility attributed to each slot (drops at the slot they happen)
    transfer: np.ndarray  # (T, O, N) image shares of each origin's new jobs by serving DC (rows sum to 1)
    steps_index: np.ndarray  # (T, N) dominant step index per DC and slot
    battery: np.ndarray  # (T, N) set point, fraction of rated power (+ charge)
    mean_steps: float
    mean_quality: float
    size: dict[str, int]  # variables, rows, nonzeros
    build_s: float
    solve_s: float


@dataclass(frozen=True)
class _Columns:
    """Index bookkeeping of the job-flow columns."""

    cell_t: np.ndarray
    cell_o: np.ndarray
    cell_k: np.ndarray
    y_cell: np.ndarray
    y_j: np.ndarray
    y_a: np.ndarray
    y_s: np.ndarray
    y_t: np.ndarray

    @property
    def n_y(self) -> int:
        return len(self.y_cell)

    @property
    def n_cells(self) -> int:
        return len(self.cell_t)


def _columns(p: OracleProblem) -> _Columns:
    """Job-flow columns only where jobs arrive (most (slot, origin, class) cells of rare classes are empty)
    and only for service slots inside the day."""
    t_n, n, s_n, a_n, _ = p.shape
    ct, co, ck = np.nonzero(p.arrivals > 0)
    c, j, a, s = np.meshgrid(
        np.arange(len(ct)), np.arange(n), np.arange(a_n), np.arange(s_n), indexing="ij", sparse=False
    )
    c, j, a, s = (v.reshape(-1) for v in (c, j, a, s))
    keep = ct[c] + a < t_n
    c, j, a, s = c[keep], j[keep], a[keep], s[keep]
    return _Columns(ct, co, ck, c, j, a, s, ct[c] + a)


def _job_objective(p: OracleProblem, cols: _Columns) -> tuple[np.ndarray, np.ndarray]:
    """Per served job: revenue, minus (optimistic) lateness, quality and transfer terms; per unserved job:
    the drop penalty if it is dropped inside the day (jobs still queued at the end cost nothing, as in the env)."""
    o, k, j, s, a = cols.cell_o[cols.y_cell], cols.cell_k[cols.y_cell], cols.y_j, cols.y_s, cols.y_a
    img = p.images[k].astype(float)
    q = p.quality[j, s]
    coef = img * p.revenue_per_image[o] * q
    coef -= p.penalty_late * p.late[j, s, a, k, o]
    coef -= p.penalty_quality * (q < p.min_quality)
    coef -= p.transfer_cost_per_image * img * (j != o)
    dropped_in_day = cols.cell_t + p.max_wait <= p.arrivals.shape[0] - 1
    return coef, np.where(dropped_in_day, -p.penalty_drop, 0.0)


def _blocks(p: OracleProblem, cols: _Columns) -> dict[str, tuple[int, int]]:
    """(offset, length) of each variable block in the column order."""
    t_n, n, s_n, _, _ = p.shape
    sizes = [("y", cols.n_y), ("z", cols.n_cells), ("m", t_n * n * s_n)]
    sizes += [(name, t_n * n) for name in _ENERGY_VARS]
    out, off = {}, 0
    for name, size in sizes:
        out[name] = (off, size)
        off += size
    return out


class _Rows:
    """Accumulates sparse rows as COO triplets."""

    def __init__(self, n_cols: int):
        self.n_cols, self.rows, self.cols, self.vals, self.rhs = n_cols, [], [], [], []
        self.count = 0

    def add(self, n_rows: int, rhs, entries) -> None:
        """``entries``: (row index within this block, column index, value) arrays."""
        for r, c, v in entries:
            r, c = np.broadcast_arrays(np.asarray(r), np.asarray(c))
            self.rows.append(r.reshape(-1) + self.count)
            self.cols.append(c.reshape(-1))
            self.vals.append(np.broadcast_to(np.asarray(v, float), r.shape).reshape(-1))
        self.rhs.append(np.broadcast_to(np.asarray(rhs, float), (n_rows,)))
        self.count += n_rows

    def matrix(self) -> tuple[sp.csr_matrix, np.ndarray]:
        a = sp.coo_matrix(
            (np.concatenate(self.vals), (np.concatenate(self.rows), np.concatenate(self.cols))),
            shape=(self.count, self.n_cols),
        )
        return a.tocsr(), np.concatenate(self.rhs)


class _Layout:
    """Column offsets of the variable blocks and the (slot, site) index t * N + i of the energy blocks."""

    def __init__(self, p: OracleProblem, cols: _Columns):
        t_n, n, _, _, _ = p.shape
        self.blk = _blocks(p, cols)
        self.n_cols = sum(size for _, size in self.blk.values())
        self.tn = np.arange(t_n * n)
        self.slot, self.site = self.tn // n, self.tn % n

    def idx(self, name: str, i) -> np.ndarray:
        return self.blk[name][0] + np.asarray(i)


def _build(p: OracleProblem, cols: _Columns):
    lay = _Layout(p, cols)
    eq, ub = _Rows(lay.n_cols), _Rows(lay.n_cols)
    _job_rows(p, cols, lay, eq, ub)
    _energy_rows(p, lay, eq, ub)
    return lay.blk, lay.n_cols, eq.matrix(), ub.matrix()


def _job_rows(p: OracleProblem, cols: _Columns, lay: _Layout, eq: _Rows, ub: _Rows) -> None:
    """Job conservation, images per (slot, DC, step count), GPU time and the facility-load bounds."""
    t_n, n, s_n, _, _ = p.shape
    y, cells = np.arange(cols.n_y), np.arange(cols.n_cells)
    img = p.images[cols.cell_k[cols.y_cell]].astype(float)
    # Every arriving job is served once (some DC, age, step count) or never: arrivals are exact.
    arrived = p.arrivals[cols.cell_t, cols.cell_o, cols.cell_k]
    eq.add(cols.n_cells, arrived, [(cols.y_cell, lay.idx("y", y), 1.0), (cells, lay.idx("z", cells), 1.0)])
    # M[t, j, s] = images served by j in slot t at s steps.
    m_row = (cols.y_t * n + cols.y_j) * s_n + cols.y_s
    m_all = np.arange(t_n * n * s_n)
    m_col = lay.idx("m", m_all)
    eq.add(t_n * n * s_n, 0.0, [(m_row, lay.idx("y", y), img), (m_all, m_col, -1.0)])
    # GPU time: best-case seconds per image at each step count within the pool's GPU-seconds.
    m_tn, m_s = m_all // s_n, m_all % s_n
    ub.add(t_n * n, p.gpu_seconds[lay.site], [(m_tn, m_col, p.image_time_s[m_tn % n, m_s])])
    # Facility load between the least and the most the env can draw for the served images.
    kwh = p.kwh_per_gpu_j.reshape(-1)
    base = kwh * p.base_energy_j[lay.site]
    lo = kwh[m_tn] * p.image_energy_lo_j[m_tn % n, m_s]
    hi = kwh[m_tn] * p.image_energy_hi_j[m_tn % n, m_s]
    load = lay.idx("load", lay.tn)
    ub.add(t_n * n, -base, [(m_tn, m_col, lo), (lay.tn, load, -1.0)])
    ub.add(t_n * n, base, [(m_tn, m_col, -hi), (lay.tn, load, 1.0)])


def _energy_rows(p: OracleProblem, lay: _Layout, eq: _Rows, ub: _Rows) -> None:
    """Load balance, battery dynamics, renewables and the battery's rated power, per slot and site."""
    tn, site, rows = lay.tn, lay.site, len(lay.tn)

    def ones(*names):
        return [(tn, lay.idx(v, tn), 1.0) for v in names]

    # Facility load = renewables used + battery discharge + grid import for the load.
    eq.add(rows, 0.0, [*ones("renew", "discharge", "grid_load"), (tn, lay.idx("load", tn), -1.0)])
    # Stored energy: e_t = e_{t-1} + eta_c * charge - discharge / eta_d (e_{-1} = the initial store).
    prev = tn - len(p.stored_init)
    entries = [
        *ones("stored"),
        (tn, lay.idx("charge_surplus", tn), -p.eta_charge[site]),
        (tn, lay.idx("charge_grid", tn), -p.eta_charge[site]),
        (tn, lay.idx("discharge", tn), 1.0 / p.eta_discharge[site]),
        (tn[prev >= 0], lay.idx("stored", prev[prev >= 0]), -1.0),
    ]
    eq.add(rows, np.where(lay.slot == 0, p.stored_init[site], 0.0), entries)
    # Renewables: used + charged + exported <= produced (the rest is curtailed).
    ub.add(rows, p.renewable_kwh.reshape(-1), ones("renew", "charge_surplus", "export"))
    # Rated power: the env charges or discharges in a slot, never both, within the rating.
    ub.add(rows, p.battery_kwh_per_slot[site], ones("charge_surplus", "charge_grid", "discharge"))


def _objective_and_bounds(p: OracleProblem, cols: _Columns, blk, n_cols: int):
    """Objective coefficients (utility per unit of each variable), variable bounds, and the constant part
    of the battery settlement."""
    t_n, n, _, _, _ = p.shape
    c, lo, hi = np.zeros(n_cols), np.zeros(n_cols), np.full(n_cols, np.inf)

    def part(name: str) -> slice:
        return slice(*_span(blk, name))

    c[part("y")], c[part("z")] = _job_objective(p, cols)
    price = p.price.reshape(-1) / KWH_PER_MWH
    c[part("grid_load")] = c[part("charge_grid")] = -price
    c[part("export")] = p.export_price.reshape(-1) / KWH_PER_MWH
    settle = p.eta_discharge * p.settle_price / KWH_PER_MWH  # value of a kWh left in store at the end
    c[blk["stored"][0] + (t_n - 1) * n + np.arange(n)] += settle
    site = np.tile(np.arange(n), t_n)
    rating = p.battery_kwh_per_slot[site]
    hi[part("charge_surplus")] = hi[part("discharge")] = rating
    hi[part("charge_grid")] = np.where(p.grid_charging[site], rating, 0.0)
    hi[part("export")] = np.where(p.export_price.reshape(-1) > 0, p.export_limit_kwh[site], 0.0)
    lo[part("stored")], hi[part("stored")] = p.stored_min[site], p.stored_max[site]
    return c, np.column_stack([lo, hi]), -float(np.sum(p.stored_init * settle))


def _span(blk, name: str) -> tuple[int, int]:
    off, size = blk[name]
    return off, off + size


def solve(p: OracleProblem, time_limit_s: float | None = None) -> OracleSolution:
    """Build and solve the LP; raise OracleError unless HiGHS reports an optimum."""
    _check(p)
    t0 = time.perf_counter()
    cols = _columns(p)
    blk, n_cols, (a_eq, b_eq), (a_ub, b_ub) = _build(p, cols)
    c, bounds, constant = _objective_and_bounds(p, cols, blk, n_cols)
    a = sp.vstack([a_eq, a_ub]).tocsc()
    row_lo = np.concatenate([b_eq, np.full(len(b_ub), -np.inf)])
    row_hi = np.concatenate([b_eq, b_ub])
    t1 = time.perf_counter()
    x = _highs(-c, a, bounds, row_lo, row_hi, time_limit_s)
    t2 = time.perf_counter()
    size = {"variables": n_cols, "rows": a.shape[0], "nonzeros": a.nnz}
    return _solution(p, cols, blk, x, float(c @ x + constant), size, t1 - t0, t2 - t1)


def _highs(cost, a: sp.csc_matrix, bounds, row_lo, row_hi, time_limit_s) -> np.ndarray:
    """Minimise ``cost @ x`` with HiGHS (highspy directly: dual simplex, about twice as fast here as
    ``scipy.optimize.linprog``'s wrapper of the same solver); returns the optimal x."""
    import highspy

    inf = highspy.kHighsInf
    h = _quiet_highs(highspy)
    if time_limit_s is not None:
        h.setOptionValue("time_limit", float(time_limit_s))
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = a.shape[1], a.shape[0]
    lp.col_cost_ = cost
    lp.col_lower_ = bounds[:, 0]
    lp.col_upper_ = np.where(np.isinf(bounds[:, 1]), inf, bounds[:, 1])
    lp.row_lower_ = np.where(np.isinf(row_lo), -inf, row_lo)
    lp.row_upper_ = row_hi
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a.indptr
    lp.a_matrix_.index_ = a.indices
    lp.a_matrix_.value_ = a.data
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise OracleError(f"HiGHS found no optimum (status: {h.modelStatusToString(status)})")
    return np.asarray(h.getSolution().col_value, dtype=float)


def _quiet_highs(highspy):
    """A silent solver: highspy prints a banner to the C-level stdout when the first one is made."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    h.setOptionValue("output_flag", False)
    return h


def _check(p: OracleProblem) -> None:
    t_n, n, s_n, a_n, k_n = p.shape
    if p.arrivals.ndim != 3 or p.arrivals.shape[1] != len(p.revenue_per_image):
        raise OracleError(
            f"arrivals must be (T, N, K) with N = {len(p.revenue_per_image)}, got {p.arrivals.shape}"
        )
    if p.late.shape != (n, s_n, a_n, k_n, n):
        raise OracleError(f"late must be {(n, s_n, a_n, k_n, n)}, got {p.late.shape}")
    for name in ("renewable_kwh", "price", "export_price", "kwh_per_gpu_j"):
        if getattr(p, name).shape != (t_n, n):
            raise OracleError(f"{name} must be {(t_n, n)}, got {getattr(p, name).shape}")
    if (p.arrivals < 0).any() or not np.isfinite(p.price).all():
        raise OracleError("arrivals must be non-negative and prices finite")


def _solution(p: OracleProblem, cols: _Columns, blk, x: np.ndarray, value: float, size, build_s, solve_s):
    t_n, n, s_n, _, _ = p.shape
    get = {name: x[slice(*_span(blk, name))] for name in blk}
    energy = {name: get[name].reshape(t_n, n) for name in _ENERGY_VARS}
    y, z = get["y"], get["z"]
    m = get["m"].reshape(t_n, n, s_n)
    o, k = cols.cell_o[cols.y_cell], cols.cell_k[cols.y_cell]
    img = p.images[k].astype(float)
    q = p.quality[cols.y_j, cols.y_s]
    late = p.late[cols.y_j, cols.y_s, cols.y_a, k, o]
    moved = cols.y_j != o
    dropped_in_day = cols.cell_t + p.max_wait <= t_n - 1
    price, xprice = p.price / KWH_PER_MWH, p.export_price / KWH_PER_MWH
    grid = energy["grid_load"] + energy["charge_grid"]
    settle = battery_settlement(p.stored_init, energy["stored"][-1], p.eta_discharge, p.settle_price)
    per_slot = {
        "revenue": _by_slot(cols.y_t, y * img * p.revenue_per_image[o] * q, t_n),
        "penalty_late": _by_slot(cols.y_t, p.penalty_late * y * late, t_n),
        "penalty_quality": _by_slot(cols.y_t, p.penalty_quality * y * (q < p.min_quality), t_n),
        "penalty_drop": _by_slot(cols.cell_t + p.max_wait, p.penalty_drop * z * dropped_in_day, t_n),
        "transfer_cost": _by_slot(cols.y_t, p.transfer_cost_per_image * y * img * moved, t_n),
        "energy_cost": (grid * price - energy["export"] * xprice).sum(axis=1),
    }
    per_slot["energy_cost"][-1] += settle.sum()
    utility = per_slot["revenue"] - sum(per_slot[key] for key in per_slot if key != "revenue")
    totals = {key: float(v.sum()) for key, v in per_slot.items()}
    totals["penalty"] = totals["penalty_late"] + totals["penalty_quality"] + totals["penalty_drop"]
    totals["battery_settlement"] = float(settle.sum())
    totals["utility"] = float(utility.sum())
    totals.update(_counts(p, cols, y, z, img, late, moved, dropped_in_day, energy, grid))
    served_img = m.sum()
    steps = np.asarray(p.steps, dtype=float)
    return OracleSolution(
        value=value,
        totals=totals,
        slot_utility=utility,
        transfer=_plan_transfer(p, cols, y, z, img),
        steps_index=_plan_steps(p, m),
        battery=_plan_battery(p, energy),
        mean_steps=float((m.sum(axis=(0, 1)) @ steps) / served_img) if served_img > 0 else float("nan"),
        mean_quality=float(np.einsum("tjs,js->", m, p.quality) / served_img)
        if served_img > 0
        else float("nan"),
        size=size,
        build_s=build_s,
        solve_s=solve_s,
    )


def _by_slot(slot: np.ndarray, values: np.ndarray, t_n: int) -> np.ndarray:
    inside = slot < t_n
    return np.bincount(slot[inside], weights=values[inside], minlength=t_n)


def _counts(p, cols, y, z, img, late, moved, dropped_in_day, energy, grid) -> dict[str, float]:
    """Job and energy counters under the info dict's names (fractional: the LP's jobs are continuous)."""
    q_low = p.quality[cols.y_j, cols.y_s] < p.min_quality
    cell_moved = np.bincount(cols.y_cell, weights=y * moved, minlength=cols.n_cells)
    return {
        "arrived": float(p.arrivals.sum()),
        "transferred": float(cell_moved.sum()),
        "served": float(y.sum()),
        "served_images": float((y * img).sum()),
        "late": float((y * late).sum()),
        "quality_violations": float((y * q_low).sum()),
        "dropped": float((z * dropped_in_day).sum()),
        "load_kwh": float(energy["load"].sum()),
        "renewable_kwh": float(p.renewable_kwh.sum()),
        "renewable_used_kwh": float(energy["renew"].sum()),
        "battery_charge_kwh": float((energy["charge_surplus"] + energy["charge_grid"]).sum()),
        "battery_discharge_kwh": float(energy["discharge"].sum()),
        "grid_import_kwh": float(grid.sum()),
        "export_kwh": float(energy["export"].sum()),
    }


def _plan_transfer(p: OracleProblem, cols: _Columns, y, z, img) -> np.ndarray:
    """Image shares of each origin's new jobs by serving DC; unserved jobs count as kept at the origin."""
    t_n, n, _, _, _ = p.shape
    routed = np.zeros((t_n, n, n))
    o = cols.cell_o[cols.y_cell]
    np.add.at(routed, (cols.cell_t[cols.y_cell], o, cols.y_j), y * img)
    np.add.at(routed, (cols.cell_t, cols.cell_o, cols.cell_o), z * p.images[cols.cell_k])
    total = routed.sum(axis=2, keepdims=True)
    keep = np.broadcast_to(np.eye(n), routed.shape)
    return np.where(total > 1e-9, routed / np.maximum(total, 1e-12), keep)


def _plan_steps(p: OracleProblem, m: np.ndarray) -> np.ndarray:
    """The step count with the most images per DC and slot; with nothing served, the cheapest step that
    meets the minimum quality (it only matters for the env's queue)."""
    ok = p.quality >= p.min_quality
    fallback = np.where(ok.any(axis=1), np.argmax(ok, axis=1), np.argmax(p.quality, axis=1))
    busy = m.sum(axis=2) > 1e-9
    return np.where(busy, m.argmax(axis=2), fallback[None, :]).astype(np.int64)


def _plan_battery(p: OracleProblem, energy) -> np.ndarray:
    net = energy["charge_surplus"] + energy["charge_grid"] - energy["discharge"]
    rating = p.battery_kwh_per_slot[None, :]
    return np.clip(np.where(rating > 0, net / np.maximum(rating, 1e-12), 0.0), -1.0, 1.0)
