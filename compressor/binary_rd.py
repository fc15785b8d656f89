"""Rate-distortion choices of binary near-lossless codes (layout 2): which latent, which step,
which wrong pixels, and how a batch shares an error budget.

All of it is the encoder's freedom; the receiver decodes whatever it is sent (docs/format.md,
"Binary kind, layout 2"), so nothing here changes the format:

- **latent refinement** (:func:`refine_symbols`): the encoder's posterior mean, rounded, is
  not the latent whose decoded levels predict the image best. Coordinate descent over the
  symbols (each dimension +-1, kept where the whole lossless code gets shorter in ideal bits)
  saves ~1.2 B/image on the mnist5k test split at the table's step (two passes; a third adds
  ~0.02 B). Each try is one decoder invoke per image, as the receiver runs it.
- **wrong pixels** (:mod:`compressor.coding.binary_flips`): each image's greedy flip path gives
  its (bits, wrong pixels) curve at every candidate step; band 0 (latent only) ends it.
- **allocation** (:func:`allocate`): per image, the cheapest point within its own cap
  (``target_error``), or, for a mean budget over the call's images (``mean_error``), a
  Lagrangian choice (one price per wrong pixel, bisected so the batch's wrong pixels fit)
  then the leftover budget spent greedily where it saves most per wrong pixel.

Costs are ideal bits while searching; the points each image may end on are then range coded
and the final choice is made on real bytes.
"""

from __future__ import annotations

import numpy as np

from compressor.coding import binary_context2 as B2
from compressor.coding import binary_flips
from compressor.coding.binary_context import LOSSLESS_BAND
from compressor.coding.latent_cost import latent_bits

REFINE_PASSES = 2
"""Coordinate-descent passes over the latent dimensions (two got 1.21 of the 1.23 B/image that
three get at the table's step, 150 test digits). A pass after the first tries only the images
that moved in the one before: the others are at a local optimum already (same result, fewer
decoder runs)."""
REFINE_STEPS = (-2, 3)
"""Steps refined and searched, relative to the table's step: ``base - 2 .. base + 3`` (six; at
1 % mean error the batch's choices fall there)."""
MAX_FLIPS = 40
"""Longest flip path per image and step (past ~5 % wrong pixels band 0 is cheaper anyway)."""
REFIT = True
"""After a first allocation, refine each step's latent once more against the image its flip
path settles on at the allocation's price (the wrong pixels make the image easier to predict
than the truth), and add those paths too."""
FINAL_POINTS = 16
"""Points per image range coded for the final choice: those nearest the ideal-bits choice."""


def refine_symbols(net, table, latent_table, step: float, bits: np.ndarray, symbols: np.ndarray, passes=None):
    """``(symbols, levels, ideal bits)`` after coordinate descent on each image's lossless code
    length (latent + pixels, ideal bits); ``bits`` bool (N, H, W), ``symbols`` int64 (N, D)."""
    passes = REFINE_PASSES if passes is None else passes
    nbrs = B2.neighbour_part(bits)
    symbols = symbols.copy()

    def cost(s, rows):
        levels = net.levels(s * step)[..., 0]
        return latent_bits(s, latent_table) + B2.pixel_bits_given(table, bits[rows], nbrs[rows], levels), levels

    best, levels = cost(symbols, slice(None))
    rows = np.arange(len(bits))  # images that moved in the last pass (the others are at a local optimum)
    for _ in range(passes):
        moved = np.zeros(len(bits), bool)
        for d in range(symbols.shape[1]):
            trying = rows
            for step_move in (-1, 1):
                if not len(trying):
                    break
                trial = symbols[trying]
                trial[:, d] += step_move
                got, lv = cost(trial, trying)
                better = got < best[trying] - 1e-9
                at = trying[better]
                symbols[at], best[at], levels[at] = trial[better], got[better], lv[better]
                moved[at] = True
                trying = trying[~better]  # +1 after a kept -1 is where the image came from
        rows = np.flatnonzero(moved)
    return symbols, levels, best


def allocate(costs: list[np.ndarray], errors: list[np.ndarray], budget: float | None) -> list[int]:
    """Index of the point each image keeps: its cheapest if ``budget`` is None (caps are the
    caller's filter), else the cheapest set with at most ``budget`` wrong pixels in all.
    Every image needs a point with 0 errors when ``budget`` is 0 (its lossless code)."""
    return _allocate(costs, errors, budget)[0]


def _allocate(costs, errors, budget) -> tuple[list[int], float]:
    """:func:`allocate`'s choice and the price per wrong pixel it settled on (0 without a budget)."""
    if budget is None:
        return [int(np.argmin(c)) for c in costs], 0.0

    def choose(price: float) -> list[int]:
        return [int(np.argmin(c + price * e)) for c, e in zip(costs, errors)]

    def wrong(choice) -> int:
        return sum(int(e[k]) for e, k in zip(errors, choice))

    lo, hi = 0.0, 1.0
    while wrong(choose(hi)) > budget:  # a price high enough to fit
        lo, hi = hi, hi * 4
        if hi > 1e9:
            raise AssertionError("no choice fits the error budget: an image without a lossless point")
    if wrong(choose(lo)) <= budget:
        hi = lo
    for _ in range(40):
        mid = (lo + hi) / 2
        if wrong(choose(mid)) <= budget:
            hi = mid
        else:
            lo = mid
    choice = choose(hi)
    left = budget - wrong(choice)
    while left > 0:  # the rest of the budget: the move saving most per extra wrong pixel that fits
        best = None
        for i, (c, e) in enumerate(zip(costs, errors)):
            k = choice[i]
            extra = e - e[k]
            ok = (extra > 0) & (extra <= left) & (c < c[k])
            if ok.any():
                gain = np.where(ok, (c[k] - c) / np.maximum(extra, 1), -np.inf)
                j = int(np.argmax(gain))
                if best is None or gain[j] > best[0]:
                    best = (gain[j], i, j)
        if best is None:
            break
        _, i, j = best
        left -= int(errors[i][j] - errors[i][choice[i]])
        choice[i] = j
    return choice, hi


def search_steps(base: int, n_steps: int) -> list[int]:
    """The steps refined and searched around the table's step ``base`` (:data:`REFINE_STEPS`)."""
    return list(range(max(0, base + REFINE_STEPS[0]), min(n_steps, base + REFINE_STEPS[1] + 1)))


def encode(encoder, bits, steps, base: int, stream: bool, cap: int | None, budget: float | None):
    """``[(header step index, payload)]`` of near-lossless codes at ``steps`` (a stream's header
    step is ``base``): each image within ``cap`` wrong pixels (None: no cap), and all together
    within ``budget`` wrong pixels (None: no mean budget)."""
    table = encoder.coding.binary_context2
    coding = encoder.coding
    n_steps = len(coding.steps)
    latents = encoder.latents(bits.astype(np.float32))
    net = encoder.prediction_network(table.runtime, table.precision, "residual")
    n = len(bits)
    points = [[] for _ in range(n)]  # (ideal bits, errors, variant, band, path, k)
    variants = []  # (step index, symbols (N, D), levels (N, H, W))

    def add(c: int, symbols: np.ndarray, levels: np.ndarray) -> tuple:
        """Points of every image at step ``c`` with these latents: its flip path and band 0."""
        v = len(variants)
        variants.append((c, symbols, levels))
        latent = latent_bits(symbols, coding.tables[c])
        for band, flips in ((LOSSLESS_BAND, MAX_FLIPS), (0, 0)):
            path = binary_flips.flip_path(table, bits, levels, band, flips)
            total = path.bits + (latent + B2.header_bits(c, base if stream else c, n_steps, band))[:, None]
            for i in range(n):
                for k in np.flatnonzero(np.isfinite(total[i])):
                    if cap is None or path.errors[i, k] <= cap:
                        points[i].append((total[i, k], path.errors[i, k], v, band, path, k))
            if band == LOSSLESS_BAND:
                kept = (total, path)
        return kept

    def allocation():
        return _allocate(
            [np.array([p[0] for p in ps]) for ps in points], [np.array([p[1] for p in ps]) for ps in points], budget
        )

    firsts = {}
    for c in steps:
        symbols, levels, _ = refine_symbols(
            net, table, coding.tables[c], coding.steps[c], bits, encoder.quantize(latents, c)
        )
        firsts[c] = (symbols, add(c, symbols, levels))
    _, price = allocation()
    for c in steps if REFIT else ():  # refit the latent to the image each step's path settles on at that price
        symbols, (total, path) = firsts[c]
        errors = np.where(np.isfinite(total), path.errors, np.iinfo(np.int64).max // 2)
        score = np.where(
            np.isfinite(total) & ((errors <= cap) if cap is not None else True), total + price * errors, np.inf
        )
        k = np.argmin(score, axis=1)
        target = np.stack([path.recon(i, k[i]) for i in range(n)])
        symbols, levels, _ = refine_symbols(net, table, coding.tables[c], coding.steps[c], target, symbols, passes=1)
        add(c, symbols, levels)
    pick, price = allocation()
    # range code the points near each image's choice, then choose again on real bytes
    finals, real, wrong = [], [], []
    for i, ps in enumerate(points):
        keep = _near(ps, pick[i], price, lossless=budget is not None or cap is not None)
        codes = []
        for j in keep:
            _, err, v, band, path, k = ps[j]
            c, symbols, levels = variants[v]
            head = base if stream else c
            payload, recon = B2.encode_one(
                c, head, n_steps, symbols[i], path.recon(i, k), levels[i], coding.tables[c], table, band
            )
            codes.append((head, payload, int(np.count_nonzero(recon != bits[i]))))
        finals.append(codes)
        wrong.append(np.array([e for _, _, e in codes], np.int64))
        sizes = np.array([len(p) for _, p, _ in codes], np.float64)
        real.append(sizes if cap is None else np.where(wrong[-1] <= cap, sizes, np.inf))  # the cap, on real pixels
    pick = allocate(real, wrong, budget)
    return [codes[k][:2] for codes, k in zip(finals, pick)]


def _near(points, chosen: int, price: float, lossless: bool) -> list[int]:
    """Indices of the points range coded for one image: the chosen one and those next cheapest
    at the allocation's price per wrong pixel, :data:`FINAL_POINTS` in all, plus its lossless
    point when a shared budget or a cap needs one to stay feasible on real bytes."""
    order = sorted(range(len(points)), key=lambda j: points[j][0] + price * points[j][1])
    keep = set(order[:FINAL_POINTS]) | {chosen}
    if lossless:
        keep.add(min(range(len(points)), key=lambda j: (points[j][1], points[j][0])))
    return sorted(keep)
