"""What each part of the grayscale residual coder buys: ideal lossless pixel bytes per image.

    python -m bench.residual_ablation BUNDLE TRAIN.npy TEST.npy [--natural]

``TRAIN.npy`` / ``TEST.npy``: uint8 (N, H, W) grayscale images (the mnist5k train and test
splits). Tables are estimated on TRAIN, bytes are measured on TEST (or, with ``--natural``, on
28x28 crops of matplotlib's sample photo), all at the bundle's lossless step, as the ideal
code length ``-log2 p`` (no termination, no header). Each row changes one thing:

- predictor: the network's grey value ``pd`` alone, MED on the pixels (no network), or
  ``pd`` + MED of the neighbours' errors (always, or only where ``|eW| + |eN| >= threshold``);
- context: the level bucket, x an activity bucket, x the bucket of the neighbours' signed error.

Then, with real codes (bytes per payload, check and parameter byte included) at every error
bound of the bundle: table set 0 alone (the network), table set 1 alone (spatial: MED, or the
smoothed MED from E = 3, under activity contexts) and the encoder's per-image choice.
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.residual_curve import natural_crops
from compressor import Encoder
from compressor import residual_codec as rc
from compressor.coding import residual

ACTIVITY_EDGES = np.array([1, 3, 7, 15, 31, 63])


def _features(table, pixels, levels):
    lv = levels.astype(np.int64) + 128
    x = pixels.astype(np.int64)
    pd = np.asarray(table.predict, np.int64)[lv]

    def nbrs(a):
        p = np.zeros((a.shape[0], a.shape[1] + 1, a.shape[2] + 2), np.int64)
        p[:, 1:, 1:-1] = a
        return p[:, 1:, :-2], p[:, :-1, 1:-1], p[:, :-1, :-2], p[:, :-1, 2:]

    w, n, nw, ne = nbrs(x - pd)
    xw, xn, xnw, xne = nbrs(x)
    return {
        "x": x,
        "pd": pd,
        "med_e": residual._med(w, n, nw),
        "med_x": residual._med(xw, xn, xnw),
        "far": np.abs(w) + np.abs(n),
        "level": np.searchsorted(np.asarray(table.level_edges), lv, side="right"),
        "act_e": np.searchsorted(ACTIVITY_EDGES, np.abs(n - nw) + np.abs(w - nw) + np.abs(ne - n), side="right"),
        "act_x": np.searchsorted(ACTIVITY_EDGES, np.abs(xn - xnw) + np.abs(xw - xnw) + np.abs(xne - xn), side="right"),
        "signed": np.searchsorted(np.asarray(table.neighbour_edges), w + n, side="right"),
    }


VARIANTS = {
    "pd alone | level": (lambda f: f["pd"], lambda f: f["level"]),
    "pd alone | level x activity": (lambda f: f["pd"], lambda f: f["level"] * 7 + f["act_e"]),
    "MED(x), no network | activity": (lambda f: f["med_x"], lambda f: f["act_x"]),
    "MED(x), no network | level x activity": (lambda f: f["med_x"], lambda f: f["level"] * 7 + f["act_x"]),
    "pd + MED(e) always | level x activity": (lambda f: f["pd"] + f["med_e"], lambda f: f["level"] * 7 + f["act_e"]),
    "pd alone | level x signed(eW + eN)": (lambda f: f["pd"], lambda f: f["level"] * 9 + f["signed"]),
    "pd + MED(e) where far (shipped) | level x signed": (
        None,  # filled in with the bundle's threshold
        lambda f: f["level"] * 9 + f["signed"],
    ),
}


def _bytes(pred_tr, ctx_tr, x_tr, pred_te, ctx_te, x_te) -> float:
    def sym(pred, x):
        return (x - np.clip(pred, 0, 255) + 128) % 256  # E = 0, wrapped, 0..255

    k_tr, k_te = sym(pred_tr, x_tr), sym(pred_te, x_te)
    contexts = int(max(ctx_tr.max(), ctx_te.max())) + 1
    counts = np.bincount((ctx_tr * 256 + k_tr).ravel(), minlength=contexts * 256).reshape(contexts, 256) + 0.0
    pooled = counts.sum(axis=0) + 1
    p = counts + 8.0 * pooled / pooled.sum()
    p /= p.sum(axis=1, keepdims=True)
    return float(-np.log2(p[ctx_te, k_te]).reshape(len(x_te), -1).sum(axis=1).mean() / 8)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("train")
    ap.add_argument("test")
    ap.add_argument("--natural", action="store_true", help="measure on natural photo crops instead of TEST")
    args = ap.parse_args(argv)
    enc = Encoder.load(f"{args.bundle}/encoder", runtime="litert")
    table = rc.table_for(enc)
    net = enc.prediction_network(table.runtime, table.precision, "residual")
    step = enc.coding.steps[table.step_index]

    def levels(pixels):
        q = enc.quantize(enc.latents(pixels), table.step_index)
        return net.run_native(net.quantize_input(q * step))[..., 0]

    train = np.load(args.train)
    test = natural_crops() if args.natural else np.load(args.test)
    f_tr, f_te = _features(table, train, levels(train)), _features(table, test, levels(test))
    thr = table.spatial_threshold
    VARIANTS["pd + MED(e) where far (shipped) | level x signed"] = (
        lambda f: f["pd"] + np.where(f["far"] >= thr, f["med_e"], 0),
        VARIANTS["pd + MED(e) where far (shipped) | level x signed"][1],
    )
    print(f"ideal lossless pixel bytes per image ({len(test)} {'natural crops' if args.natural else 'test images'})")
    for name, (pred, ctx) in VARIANTS.items():
        b = _bytes(pred(f_tr), ctx(f_tr), f_tr["x"], pred(f_te), ctx(f_te), f_te["x"])
        print(f"  {name:52s} {b:8.1f}")
    if table.spatial is not None:
        _table_sets(enc, table, test, levels(test))
    return 0


def _table_sets(enc, table, pixels, levels) -> None:
    """Real payload bytes per image under set 0, set 1 and the per-image choice, per bound."""
    symbols = enc.quantize(enc.latents(pixels), table.step_index)
    ct = enc.coding.tables[table.step_index]
    print("payload bytes per image (real codes): set 0 alone | set 1 alone | per-image choice")
    for e in table.bounds:
        row = []
        for sets in ([residual.NETWORK], [residual.SPATIAL], None):
            _, payloads = residual.encode_choosing_set(symbols, pixels, levels, ct, table, e, sets)
            row.append(float(np.mean([len(p) + 1 for p in payloads])))
        print(f"  E = {e:2d}: " + " | ".join(f"{b:7.1f}" for b in row))


if __name__ == "__main__":
    raise SystemExit(main())
