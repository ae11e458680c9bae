"""The whole job on tiny settings: real data, real Brevitas, real Optuna storage, real QONNX."""

from __future__ import annotations

import dataclasses
import json

import optuna
import pytest

from brevitas_amed.cli import main
from brevitas_amed.job.recipe import RecipeError
from brevitas_amed.job.records import Summary
from brevitas_amed.job.run import run
from tests.job.tiny import copy_run
from tests.job.tiny import tiny_recipe as _recipe


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits")
    summary = run(_recipe(out), progress=None)
    return out, summary


def test_tiny_digits_job_writes_models_and_report(tiny_run):
    out, summary = tiny_run
    assert Summary.from_dict(json.loads((out / "summary.json").read_text())) == summary
    assert summary.trials == 4 and summary.float_accuracy.test > 0.8
    labels = [f.label for f in summary.finals]
    assert "uniform-8" in labels and "uniform-4" in labels and any(l.startswith("amed-t") for l in labels)
    for final in summary.finals:
        assert 0 <= final.test_accuracy <= 1
        assert final.latency_cycles == sum(final.per_layer_cycles.values()) > 0
        assert final.qonnx.verified is True, final.qonnx
        assert final.qonnx.path == f"models/{final.label}.onnx" and (out / final.qonnx.path).is_file()
        assert (out / final.checkpoint).is_file()
        assert set(final.bits) == {"stem.0", "conv2.0", "block_a.0", "block_b.0", "conv5.0", "fc"}
    u8 = next(f for f in summary.finals if f.label == "uniform-8")
    u4 = next(f for f in summary.finals if f.label == "uniform-4")
    assert u8.latency_cycles == summary.uniform8_latency_cycles
    assert u4.latency_cycles < u8.latency_cycles and u4.size_bits < u8.size_bits
    for name in ("pareto.png", "bits.png", "report.md", "trials.json", "study.db", "recipe.yaml"):
        assert (out / name).is_file(), name
    assert "uniform-4" in (out / "report.md").read_text()


def test_latency_levels_search_the_widest_width_of_each_level(tmp_path):
    from brevitas_amed.job.context import build_job
    from brevitas_amed.job.progress import no_progress
    from brevitas_amed.job.space import allocation, param_name, pinned_bits, search_params

    recipe = _recipe(tmp_path, "search.bit_choices=latency_levels", "finetune.baselines=[8]", "export.qonnx=false")
    summary = run(recipe, progress=None)
    job = build_job(recipe, no_progress())  # loads the run's float model and shared weights
    params, pinned = search_params(job), pinned_bits(job)
    weights = {k: b for k, b in pinned.items() if job.qmodel.knobs[k].kind == "weight"}
    assert weights, "on Bit Fusion some weight knobs of the digits CNN cost the same at every width"
    assert len(params) + len(pinned) == len(job.qmodel.search_space())
    assert set(allocation(job, {p: c[0] for p, c in params.items()})) == set(job.qmodel.search_space())
    study = optuna.load_study(study_name="digits", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert len(study.trials) == 4
    for trial in study.trials:
        assert set(trial.params) == set(params)
        assert all(trial.params[p] in choices for p, choices in params.items())
        bits = {**pinned, **{k: trial.params[param_name(job.qmodel.knobs[k])] for k in job.search_space() if k not in pinned}}
        assert trial.user_attrs["latency_cycles"] == job.latency.cycles(bits)
    searched = [f for f in summary.finals if f.kind == "search"]
    assert searched and all(f.bits[k][0] == b for f in searched for k, b in weights.items())
    search = job.recipe.search.model_copy(update={"bit_choices": "all"})
    everything = dataclasses.replace(job, recipe=job.recipe.model_copy(update={"search": search}))
    assert len(search_params(everything)) == len(job.qmodel.search_space()) and not pinned_bits(everything)
    # levels that came out otherwise on resume (another simulator, cache or machine) are refused
    assert study.user_attrs["search_params"] == search_params(job)
    study.set_user_attr("search_params", {**search_params(job), "a:relu": [4, 8]})
    with pytest.raises(RecipeError, match="searched over other bit choices \\(a:relu\\)"):
        run(recipe, progress=None)


def test_rerun_resumes_without_repeating_trials_or_finetuning(tiny_run, tmp_path):
    out = copy_run(tiny_run[0], tmp_path / "run")
    ckpt = out / "models" / "uniform-8.pt"
    before = ckpt.stat().st_mtime_ns
    again = run(_recipe(out, "search.trials=6"), progress=None)
    study = optuna.load_study(study_name="digits", storage=f"sqlite:///{out / 'study.db'}")
    assert again.trials == 6 and len(study.trials) == 6
    assert [t.number for t in study.trials] == list(range(6))
    assert ckpt.stat().st_mtime_ns == before  # same bits and settings: not fine-tuned again


KILLED_WORKER = """
import sys, time, optuna
storage = optuna.storages.RDBStorage(sys.argv[1], heartbeat_interval=1, grace_period=2)
study = optuna.load_study(study_name="digits", storage=storage)
first = study.trials[0]
study.enqueue_trial(first.params)

def objective(trial):
    for name, dist in first.distributions.items():
        trial.suggest_categorical(name, list(dist.choices))
    print("running", flush=True)
    time.sleep(600)

study.optimize(objective, n_trials=1)
"""


def test_killed_worker_trial_is_failed_by_its_heartbeat_and_retried(tiny_run, tmp_path):
    """kill -9 of a worker in the middle of a trial: the next run fails it once its heartbeat has
    lapsed (Optuna's heartbeat), retries its parameters once, and loses no completed trial."""
    import signal
    import subprocess
    import sys
    import time

    out = copy_run(tiny_run[0], tmp_path / "run")
    storage = f"sqlite:///{out / 'study.db'}"
    completed = {t.number for t in optuna.load_study(study_name="digits", storage=storage).trials
                 if t.state == optuna.trial.TrialState.COMPLETE}
    worker = subprocess.Popen([sys.executable, "-c", KILLED_WORKER, storage], stdout=subprocess.PIPE, text=True)
    assert worker.stdout.readline().strip() == "running"
    orphan = max(t.number for t in optuna.load_study(study_name="digits", storage=storage).trials)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    time.sleep(3)  # past the grace period of 2 s
    run(_recipe(out, "search.trials=7", "search.heartbeat_s=1"), progress=None)
    study = optuna.load_study(study_name="digits", storage=storage)
    assert study.trials[orphan].state == optuna.trial.TrialState.FAIL
    retries = [t for t in study.trials if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == orphan]
    assert len(retries) == 1 and retries[0].params == study.trials[orphan].params
    assert retries[0].state == optuna.trial.TrialState.COMPLETE
    assert completed <= {t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) >= 7


def test_other_recipe_cannot_reuse_the_output_dir(tiny_run):
    out, _ = tiny_run
    with pytest.raises(RecipeError, match="different quantization settings"):
        run(_recipe(out, "quantization.weight_bits=[4, 8]", "finetune.baselines=[8, 4]"), progress=None)


def test_report_command_redraws(tiny_run, tmp_path, capsys):
    out = copy_run(tiny_run[0], tmp_path / "run")
    (out / "pareto.png").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "pareto.png").is_file()
    assert main(["report", str(out / "nope")]) == 2
    assert "run 'brevitas-amed recipe" in capsys.readouterr().err


def test_resnet18_through_the_pipeline_on_small_inputs(tmp_path):
    recipe = _recipe(tmp_path, "model.name=resnet18", "data.channels=3", "data.image_size=16",
                     "search.trials=2", "finetune.baselines=[8]", "finetune.top_k=1", "model.pretrain.epochs=1",
                     "export.verify_samples=1")
    summary = run(recipe, progress=None)
    assert len(summary.finals[0].bits) == 21
    assert all(f.qonnx.verified for f in summary.finals)


def test_compare_runs_every_method_on_one_plot(tiny_run, tmp_path, capsys):
    from brevitas_amed.job.compare import run_compare

    out = copy_run(tiny_run[0], tmp_path / "run")
    result = run_compare(_recipe(out, "search.trials=7"), ["amed", "tpe", "ohq", "differentiable", "uniform"],
                         progress=None)
    methods = {f.method for f in result.finals}
    assert methods == {"amed", "tpe", "ohq", "differentiable", "uniform"}
    for f in result.finals:
        assert f.qonnx.verified is True and 0 < f.latency_ratio <= 1.0 + 1e-9
    assert (out / "compare.png").is_file() and "| ohq |" in (out / "compare.md").read_text()
    spent = {c.method: c for c in result.compute}
    assert list(spent) == ["amed", "tpe", "ohq", "differentiable", "uniform"]
    assert spent["amed"].trials == spent["tpe"].trials == 7 and spent["amed"].seconds > 0
    assert 1 <= spent["amed"].evaluations <= 7 and spent["ohq"].trials is None and spent["ohq"].seconds > 0
    assert "| search trials | search time (s) |" in (out / "compare.md").read_text()
    from brevitas_amed.job.records import Comparison
    assert Comparison.from_dict(json.loads((out / "compare.json").read_text())) == result
    assert main(["compare", "--methods", "amed,haq"]) == 2
    assert "unknown ['haq']" in capsys.readouterr().err


def test_size_limit_prunes_before_accuracy_and_bounds_the_picks(tmp_path):
    # Uniform 8-bit weights are 41.3 KB; a 30 KB limit rejects the enqueued all-8 start at once.
    summary = run(_recipe(tmp_path, "quality.size_limit_kb=30", "search.trials=6", "finetune.baselines=[4]"),
                  progress=None)
    study = optuna.load_study(study_name="digits", storage=f"sqlite:///{tmp_path / 'study.db'}")
    first = study.trials[0]
    assert first.state == optuna.trial.TrialState.PRUNED and "quality" not in first.user_attrs
    assert first.user_attrs["size_bits"] > 30 * 8192
    searched = [f for f in summary.finals if f.kind == "search"]
    assert searched and all(f.size_bits <= 30 * 8192 for f in searched)


def test_impossible_size_limit_says_what_to_change(tmp_path):
    with pytest.raises(RecipeError, match="size_limit_kb=1.0: even the smallest allocation needs"):
        run(_recipe(tmp_path, "quality.size_limit_kb=1"), progress=None)
