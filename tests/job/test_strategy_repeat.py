"""A peer strategy proposes the same allocations whatever ran before it, so a resumed compare
(which fine-tunes nothing it already has) gives the table a fresh run gives."""

from __future__ import annotations

import itertools

import torch

from brevitas_amed.job.compare import strategy_candidates
from brevitas_amed.job.context import build_job
from brevitas_amed.job.progress import no_progress
from tests.job.tiny import tiny_recipe


def test_ohq_proposes_the_same_after_other_work_moved_the_loaders(tmp_path):
    job = build_job(tiny_recipe(tmp_path / "run", "quantization.calibration_batches=2"), no_progress())
    first = [c.knob_bits for c in strategy_candidates(job, "ohq")]
    for _ in itertools.islice(job.loaders["train"], 3):  # what a fine-tuning would have drawn
        pass
    torch.rand(1000)
    again = [c.knob_bits for c in strategy_candidates(job, "ohq")]
    assert first == again
