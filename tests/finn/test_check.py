"""The weight-bit check on FINN's per-layer result, without FINN."""

from __future__ import annotations

from brevitas_amed.finn.check import expected_weight_dtype, weight_bit_mismatches

CHOSEN = {"stem.0": [8, 8], "conv2.0": [3, 4], "fc": [8, 8]}


def layers(*dtypes):
    names = ["stem.0", "conv2.0", "fc"]
    return [{"node": f"MVAU_hls_{i}", "layer": names[i], "weight_dtype": d} for i, d in enumerate(dtypes)]


def test_equal_datatypes_pass():
    assert weight_bit_mismatches(layers("INT8", "INT3", "INT8"), CHOSEN) == []
    assert expected_weight_dtype(2) == "INT2" and expected_weight_dtype(1) == "BIPOLAR"


def test_a_wrong_datatype_is_named_with_its_layer():
    assert weight_bit_mismatches(layers("INT8", "INT4", "INT8"), CHOSEN) == [
        "MVAU_hls_1 (conv2.0): FINN weight datatype INT4, chosen INT3"]


def test_unmatched_and_missing_layers_are_problems():
    found = layers("INT8", "INT3", "INT8")
    found[2]["layer"] = None
    problems = weight_bit_mismatches(found, CHOSEN)
    assert problems == ["MVAU_hls_2: no chosen layer holds its weights (None)",
                        "fc: chosen 8-bit weights but no FINN MVAU/VVAU carries them"]


def test_a_float_layer_is_not_a_crash():
    chosen = {**CHOSEN, "fc": [None, None]}
    assert weight_bit_mismatches(layers("INT8", "INT3", "INT8")[:2], chosen) == []
    assert weight_bit_mismatches(layers("INT8", "INT3", "INT8"), chosen) == [
        "MVAU_hls_2 (fc): FINN holds integer weights of a layer the job kept in float"]


def test_a_streamlined_graph_that_computes_something_else_fails_the_model():
    from brevitas_amed.finn.flow import streamlining_differs
    assert not streamlining_differs({"streamlined_max_abs_diff": 0.0})
    assert not streamlining_differs({"streamlined_max_abs_diff": None})
    assert streamlining_differs({"streamlined_max_abs_diff": 0.5})
