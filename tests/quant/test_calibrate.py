"""input_batches: the one way batches become inputs."""

from __future__ import annotations

import pytest
import torch

from brevitas_amed.quant import input_batches


def test_input_batches_drop_targets_and_stop_at_the_limit():
    x = [torch.full((2, 1), float(i)) for i in range(5)]
    pairs = [(t, torch.zeros(2)) for t in x]
    assert [int(t[0, 0]) for t in input_batches(pairs, 3)] == [0, 1, 2]
    assert [int(t[0, 0]) for t in input_batches(x, 9)] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("data, count, match", [([], 2, "no batch"), (None, 2, "no batch"),
                                                ([torch.zeros(1)], 0, "max_batches must be at least 1")])
def test_input_batches_say_what_is_wrong(data, count, match):
    with pytest.raises(ValueError, match=match):
        list(input_batches(data, count))
