"""What a trial measures: the adaptation or batch-norm proxy, averaged over draws, and the resume
stamp that keeps a study to one proxy."""

from __future__ import annotations

import json

import pytest
import torch

from brevitas_amed.job.context import build_job
from brevitas_amed.job.inputs import prepare_output_dir
from brevitas_amed.job.progress import no_progress
from brevitas_amed.job.recipe import RecipeError
from brevitas_amed.job.search import estimate_accuracy
from brevitas_amed.training.loops import BATCH_NORMS, reestimate_batchnorm
from tests.job.tiny import tiny_recipe


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    return build_job(tiny_recipe(tmp_path_factory.mktemp("proxy") / "run", "search.proxy=batchnorm",
                                 "search.bn_batches=3"), no_progress())


def low_bits(job) -> dict[str, int]:
    return {k: min(c) for k, c in job.qmodel.search_space().items()}


def test_batchnorm_proxy_changes_only_batchnorm_statistics(job):
    q = job.qmodel
    acc = estimate_accuracy(job, low_bits(job), seed=5)
    assert 0.0 <= acc <= 1.0 and not q.training
    state = q.state_dict()
    changed = {k for k, v in job.base_state.items()
               if not torch.equal(v, state[k]) and not k.endswith("bit_width")}  # the bits are set, of course
    assert changed and all(k.rsplit(".", 1)[1] in ("running_mean", "running_var", "num_batches_tracked")
                           for k in changed)  # no weight or scale trained
    norms = [m for m in q.modules() if isinstance(m, BATCH_NORMS)]
    assert norms and all(m.momentum == 0.1 and int(m.num_batches_tracked) == 3 for m in norms)
    assert estimate_accuracy(job, low_bits(job), seed=5) == acc  # a trial repeats


def test_reestimation_uses_the_given_batches(job):
    q = job.qmodel
    q.load_state_dict(job.base_state)
    x = torch.randn(8, *job.data.input_shape) * 3 + 1
    reestimate_batchnorm(q, [(x, None)], batches=1)
    first = next(m for m in q.modules() if isinstance(m, BATCH_NORMS))
    assert int(first.num_batches_tracked) == 1 and not first.training
    assert not torch.allclose(first.running_mean, torch.zeros_like(first.running_mean))


def test_draws_average_the_single_draws(job):
    bits, recipe = low_bits(job), job.recipe
    singles = [estimate_accuracy(job, bits, seed) for seed in (7, 7 + 100_003)]
    job.recipe = recipe.model_copy(update={"search": recipe.search.model_copy(update={"draws": 2})})
    try:
        assert estimate_accuracy(job, bits, 7) == pytest.approx(sum(singles) / 2)
    finally:
        job.recipe = recipe


def test_an_older_stamp_resumes_and_another_proxy_is_refused(tmp_path):
    out = tmp_path / "run"
    prepare_output_dir(tiny_recipe(out))
    stamp = out / "recipe.json"
    data = json.loads(stamp.read_text())
    for key in ("proxy", "bn_batches", "draws"):  # as a version before these settings wrote it
        del data["search_affecting"]["search"][key]
    stamp.write_text(json.dumps(data))
    prepare_output_dir(tiny_recipe(out))  # defaults: the same study
    stamp.write_text(json.dumps(data))
    with pytest.raises(RecipeError, match="different search settings"):
        prepare_output_dir(tiny_recipe(out, "search.proxy=batchnorm"))
    with pytest.raises(RecipeError, match="different search settings"):
        prepare_output_dir(tiny_recipe(out, "search.draws=2"))


def test_a_stamp_from_before_bit_choices_resumes_with_every_width_only(tmp_path):
    """That version searched every width (then the only way): resuming its study in the latency
    levels, today's default, would mix two parameter sets in one study."""
    out = tmp_path / "run"
    prepare_output_dir(tiny_recipe(out, "search.bit_choices=all"))
    stamp = out / "recipe.json"
    data = json.loads(stamp.read_text())
    del data["search_affecting"]["search"]["bit_choices"]
    stamp.write_text(json.dumps(data))
    prepare_output_dir(tiny_recipe(out, "search.bit_choices=all"))
    stamp.write_text(json.dumps(data))
    with pytest.raises(RecipeError, match="different search settings"):
        prepare_output_dir(tiny_recipe(out))
    assert tiny_recipe(out).search.bit_choices == "latency_levels"


def test_a_study_searched_in_every_width_is_refused_under_the_latency_levels_naming_the_setting(tmp_path):
    """The previous version's stamp records bit_choices: all; the new default would mix parameter
    sets, so the message names the study's value, and setting it resumes the folder."""
    out = tmp_path / "run"
    prepare_output_dir(tiny_recipe(out, "search.bit_choices=all"))
    with pytest.raises(RecipeError, match=r"different search settings \(the study's: search.bit_choices='all'\)"):
        prepare_output_dir(tiny_recipe(out))
    prepare_output_dir(tiny_recipe(out, "search.bit_choices=all"))
