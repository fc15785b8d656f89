"""Exports are reproducible: the decoder graph is chosen by a fixed rule unless asked to time."""

from __future__ import annotations

import json

import pytest


def _trial(graph: str, per_channel: bool, us: float, ok: bool = True):
    from export.variants import Trial

    return Trial("litert", graph, per_channel, 1e-6, 0.1, 3.4, us, ok)


def test_the_fixed_rule_keeps_its_weights_even_when_the_other_weights_are_faster():
    from export.variants import _fixed

    trials = [_trial("conv_d2s", True, 90.0), _trial("conv_d2s", False, 30.0)]
    assert _fixed(trials, (True, False)).per_channel is True
    assert _fixed(trials, (False, True)).per_channel is False


def test_the_fixed_rule_takes_the_other_weights_only_when_its_own_fail_the_quality_checks():
    from export.variants import _fixed

    trials = [_trial("conv_d2s", True, 50.0, ok=False), _trial("conv_d2s", False, 60.0)]
    assert _fixed(trials, (True, False)).per_channel is False
    both_fail = [_trial("conv_d2s", True, 50.0, ok=False), _trial("conv_d2s", False, 60.0, ok=False)]
    assert _fixed(both_fail, (True, False)).per_channel is True  # and the bundle's validation names it


def test_the_fixed_rule_ships_the_phase_graph_with_a_depthwise_output_to_litert_and_the_depth_to_space_graph_to_onnx():
    from export.variants import DEFAULT_OPTION, _graphs_for

    assert DEFAULT_OPTION == "fixed"
    assert _graphs_for("fixed", "tflite") == ("conv_phases_dw",) and _graphs_for("fixed", "onnx") == ("conv_d2s",)
    assert _graphs_for("transpose", "onnx") == ("transpose",)
    assert set(_graphs_for("auto", "tflite")) == {"transpose", "conv_d2s", "conv_phases", "conv_phases_dw"}


def test_auto_follows_the_timing_and_the_default_does_not():
    from export.variants import _pick

    trials = [_trial("transpose", True, 100.0), _trial("conv_d2s", True, 60.0)]
    assert _pick(trials).graph == "conv_d2s"  # auto: the fastest beyond the margin


def test_export_command_takes_a_decoder_graph_option_whose_default_is_fixed():
    from export.cli import build_parser as _parser
    from export.config import DECODER_GRAPH

    assert _parser().parse_args(["export", "run"]).decoder_graph == DECODER_GRAPH == "fixed"
    assert _parser().parse_args(["export", "run", "--decoder-graph", "auto"]).decoder_graph == "auto"
    with pytest.raises(SystemExit):
        _parser().parse_args(["export", "run", "--decoder-graph", "winograd"])


def test_an_unknown_decoder_graph_option_is_refused_with_the_choices():
    from export.variants import choose

    with pytest.raises(ValueError, match="fixed, conv_phases, conv_phases_dw, conv_d2s, transpose, auto"):
        choose(None, None, None, None, option="fastest")


def test_two_exports_of_one_run_give_the_same_model_id(bundle_dir, demo):
    """The session's bundle and the demo's (tests/conftest.py: ``python -m export demo`` exported a
    copy of the same run, in another process and folder) are one export twice: a third export here
    would prove nothing more and cost minutes."""
    repo, proc, _ = demo
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    again_dir = repo / "out" / "bundle"
    again = json.loads((again_dir / "manifest.json").read_text())
    first = json.loads((bundle_dir / "manifest.json").read_text())
    assert again["model_id"] == first["model_id"]
    assert again["decoder_graphs"] == first["decoder_graphs"]
    for role in ("encoder", "decoder"):
        hashes = [
            [f["sha256"] for f in json.loads((b / role / "manifest.json").read_text())["files"]]
            for b in (bundle_dir, again_dir)
        ]
        assert hashes[0] == hashes[1], role
