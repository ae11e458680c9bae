"""The size limit with knobs the sampler does not move."""

from __future__ import annotations

import pytest

from brevitas_amed.job.run import run
from tests.job.tiny import tiny_recipe

pytestmark = pytest.mark.slow


def test_size_limit_with_single_choice_weight_bits(tmp_path):
    """Weight knobs with one choice are no chain coordinates: the limit counts them as fixed."""
    summary = run(tiny_recipe(tmp_path, "quantization.weight_bits=[4]", "finetune.baselines=[4]",
                              "quality.size_limit_kb=30", "export.qonnx=false"), progress=None)
    assert summary.trials == 4
    assert all(f.size_bits <= 30 * 8192 for f in summary.finals)
