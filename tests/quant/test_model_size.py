"""Model size: QuantizedModel is its one owner."""

from __future__ import annotations

import random

import pytest

from brevitas_amed.quant import QuantPolicy, quantize


@pytest.mark.parametrize("policy", [QuantPolicy(), QuantPolicy(first_layer="float", last_layer="float")])
def test_weight_counts_and_sizes_agree(trained_digits_cnn, policy):
    qmodel = quantize(trained_digits_cnn, policy)
    counts = qmodel.weight_counts()
    float_layers = dict(trained_digits_cnn.named_modules())
    assert counts == {layer: float_layers[layer].weight.numel() for layer in qmodel.layers}
    assert qmodel.float_size_bits() == 32 * sum(counts.values())
    rng = random.Random(0)
    for _ in range(5):
        allocation = {k: rng.choice(c) for k, c in qmodel.search_space().items()}
        bits = {**qmodel.get_knob_bits(), **allocation}
        expected = sum(n * (32 if bits[k] is None else bits[k]) for k, n in counts.items())
        assert qmodel.weight_size_bits(allocation) == expected


def test_uniform_eight_bits_is_a_quarter_of_float(trained_digits_cnn):
    qmodel = quantize(trained_digits_cnn)
    qmodel.set_uniform(8)
    assert qmodel.weight_size_bits() * 4 == qmodel.float_size_bits()
    qmodel.set_uniform(4)
    assert qmodel.weight_size_bits() < qmodel.float_size_bits() // 4
