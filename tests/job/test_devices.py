"""The recipe's ``device`` through the job: validation before anything is written, a trial that runs
out of memory fails alone with advice (checkpoints across devices: test_resume.py)."""

from __future__ import annotations

import optuna
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from brevitas_amed.cli import main
from brevitas_amed.job.context import build_job
from brevitas_amed.job.progress import no_progress
from brevitas_amed.job.recipe import RecipeError, load_recipe
from brevitas_amed.job.search import run_search
from brevitas_amed.training.device import DeviceLoader, cuda_count
from tests.job.tiny import tiny_recipe


def test_device_field_is_checked_when_the_recipe_loads():
    assert load_recipe(None, ["device=cuda:1"]).device == "cuda:1"
    with pytest.raises(RecipeError, match=r"device: device must be auto, cpu, cuda or cuda:N .*\(got 'gpu'\)"):
        load_recipe(None, ["device=gpu"])


def test_cuda_on_a_machine_without_one_is_one_line_and_writes_nothing(tmp_path, capsys):
    if cuda_count():
        pytest.skip("this machine has a CUDA device")
    out = tmp_path / "run"
    assert main(["recipe", "--set", "device=cuda", "--set", f"output_dir={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("brevitas-amed: error: device 'cuda': torch") and "set device: auto or cpu" in err
    assert len(err.splitlines()) == 1 and not out.exists()
    assert main(["recipe", "--workers", "2", "--set", "device=cuda:1", "--set", f"output_dir={out}"]) == 2
    assert not out.exists()


class FirstBatchTooLarge(Dataset):
    """One batch per pass: the first is far larger than any memory (an expanded view, so making
    it costs nothing; the model's first layer then really fails to allocate), later ones are real."""

    def __init__(self, real: tuple[torch.Tensor, torch.Tensor]):
        self.real, self.calls = real, 0

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int):
        self.calls += 1
        if self.calls > 1:
            return self.real
        x, y = self.real
        return x[:1].expand(2 ** 34, *x.shape[1:]), y[:1].expand(2 ** 34)


def test_a_trial_out_of_memory_fails_alone_with_the_batch_size_to_lower(tmp_path, caplog):
    job = build_job(tiny_recipe(tmp_path, "search.trials=3"), no_progress())
    real = next(iter(job.loaders["train"].loader))
    gen = torch.Generator().manual_seed(0)
    job.loaders["train"] = DeviceLoader(DataLoader(FirstBatchTooLarge(real), batch_size=None, shuffle=True,
                                                   generator=gen), job.device)
    with caplog.at_level("WARNING", logger="brevitas_amed"):
        study = run_search(job, no_progress())
    first = study.trials[0]
    assert first.state == optuna.trial.TrialState.FAIL
    assert first.user_attrs["error"].startswith(f"trial 0 ran out of memory on {job.device} at data.batch_size=64; "
                                                f"lower it (e.g. --set data.batch_size=32)")
    assert "trial 0 failed and counts as a rejected move: trial 0 ran out of memory" in caplog.text
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 3  # the search went on
