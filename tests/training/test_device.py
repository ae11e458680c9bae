"""Devices: what a recipe's ``device`` means here, batches on the model's device, out-of-memory advice."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from brevitas_amed.training.device import (DeviceLoader, OutOfDeviceMemory, cuda_count, out_of_memory_advice,
                                           resolve_device)
from brevitas_amed.training.device_spec import worker_devices
from brevitas_amed.training.loops import evaluate, train


def test_auto_and_cpu_resolve_here():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda:0") if cuda_count() else torch.device("cpu"))


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:x", "CPU", "cuda:0 ", ""])
def test_malformed_device_says_what_is_allowed(spec):
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or cuda:N"):
        resolve_device(spec)


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_where_there_is_none_is_refused_with_advice(spec):
    if cuda_count():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(ValueError, match=r"sees no CUDA device on this machine; set device: auto or cpu"):
        resolve_device(spec)


def test_a_cuda_index_past_the_last_device_is_refused():
    if not cuda_count():
        pytest.skip("needs a CUDA device")
    assert resolve_device("cuda") == torch.device("cuda:0")
    with pytest.raises(ValueError, match=f"has {cuda_count()} CUDA device"):
        resolve_device(f"cuda:{cuda_count()}")


def test_workers_get_one_gpu_each_round_robin_and_share_an_explicit_device():
    assert worker_devices("auto", 5, cuda_devices=2) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert worker_devices("cuda", 3, cuda_devices=8) == ["cuda:0", "cuda:1", "cuda:2"]
    assert worker_devices("cuda:1", 3, cuda_devices=2) == ["cuda:1"] * 3
    assert worker_devices("auto", 2, cuda_devices=0) == ["cpu", "cpu"]
    assert worker_devices("cpu", 2, cuda_devices=4) == ["cpu", "cpu"]


def test_device_loader_keeps_what_the_job_uses_and_delivers_on_its_device():
    device = resolve_device("auto")
    data = TensorDataset(torch.randn(10, 3), torch.arange(10) % 2)
    gen = torch.Generator().manual_seed(0)
    loader = DeviceLoader(DataLoader(data, batch_size=4, shuffle=True, generator=gen), device)
    assert len(loader) == 3 and loader.dataset is data and loader.batch_size == 4 and loader.generator is gen
    batches = list(loader)
    assert all(x.device.type == device.type and y.device.type == device.type for x, y in batches)
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == sorted(data.tensors[1].tolist())


def test_loops_move_batches_to_the_models_device():
    device = resolve_device("auto")
    model = torch.nn.Linear(3, 2).to(device)
    data = DataLoader(TensorDataset(torch.randn(16, 3), torch.arange(16) % 2), batch_size=8)  # CPU batches
    train(model, data, steps=2)
    assert 0 <= evaluate(model, data) <= 1


def test_out_of_memory_names_the_batch_size_to_lower():
    device = resolve_device("auto")
    with pytest.raises(OutOfDeviceMemory, match=r"trial 3 ran out of memory on .* at data.batch_size=256; "
                                                r"lower it \(e.g. --set data.batch_size=128\)") as info:
        with out_of_memory_advice("trial 3", device, 256):
            torch.empty(2 ** 50, dtype=torch.uint8, device=device)  # a real allocation failure
    assert isinstance(info.value, RuntimeError)  # the search records it as a failed trial and goes on


def test_other_errors_pass_unchanged():
    with pytest.raises(RuntimeError, match="^shape mismatch$"):
        with out_of_memory_advice("trial 1", "cpu", 64):
            raise RuntimeError("shape mismatch")
