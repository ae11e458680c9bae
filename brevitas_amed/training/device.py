"""Where the job's tensors live: the recipe's ``device``, batches moved there, out-of-memory
errors turned into advice.

``auto`` is the first CUDA device when torch sees one, else the CPU; ``cuda`` is ``cuda:0``;
``cuda:N`` must exist. Checkpoints are always read with ``map_location="cpu"`` and copied into a
model that is already on its device, so a run trained on a GPU resumes on a CPU and the reverse.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn

from brevitas_amed.training.device_spec import check_device_spec


def cuda_count() -> int:
    """CUDA devices torch can use here (0 on a CPU-only machine or a CPU-only torch build)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(spec: str = "auto") -> torch.device:
    """The torch device a recipe's ``device`` names on this machine.

    Raises:
        ValueError: A malformed ``spec``, CUDA asked for where torch sees none, or an index past
            the last CUDA device; the message says what to set instead.
    """
    check_device_spec(spec)
    count = cuda_count()
    if spec == "auto":
        return torch.device("cuda:0" if count else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if not count:
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
        raise ValueError(f"device {spec!r}: torch {torch.__version__} ({build}) sees no CUDA device on this "
                         f"machine; set device: auto or cpu")
    index = int(spec.partition(":")[2] or 0)
    if index >= count:
        raise ValueError(f"device {spec!r}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}; "
                         f"set device: cuda or a smaller index")
    return torch.device("cuda", index)


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (the CPU for a model without either)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors of a batch (a tensor, or a tuple/list of them) on ``device``; pinned CPU tensors
    are copied to CUDA without blocking the host."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=device.type == "cuda")
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device) for b in batch)
    return batch


class DeviceLoader:
    """A DataLoader whose batches arrive on ``device``.

    It keeps the loader's length, dataset, batch size and shuffling ``generator``, so code written
    for a DataLoader (the strategies, calibration, the loops) takes it unchanged.
    """

    def __init__(self, loader: torch.utils.data.DataLoader, device: torch.device):
        self.loader = loader
        self.device = device

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            yield to_device(batch, self.device)

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def dataset(self):
        return self.loader.dataset

    @property
    def batch_size(self) -> int | None:
        return self.loader.batch_size

    @property
    def generator(self) -> torch.Generator | None:
        return self.loader.generator


class OutOfDeviceMemory(RuntimeError):
    """A step did not fit in the device's memory; the message names the batch size to lower."""


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA out-of-memory error, or the CPU (or MPS) allocator refusing an allocation."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


@contextlib.contextmanager
def out_of_memory_advice(what: str, device: torch.device | str, batch_size: int) -> Iterator[None]:
    """Turn an out-of-memory error inside the block into :class:`OutOfDeviceMemory`.

    The CUDA cache is emptied first, so the caller can go on (the search's next trial).
    """
    try:
        yield
    except RuntimeError as exc:
        if isinstance(exc, OutOfDeviceMemory) or not is_out_of_memory(exc):
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        lower = max(2, batch_size // 2)
        raise OutOfDeviceMemory(f"{what} ran out of memory on {device} at data.batch_size={batch_size}; lower it "
                                f"(e.g. --set data.batch_size={lower}) or use a device with more memory") from exc
