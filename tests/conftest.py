"""Shared fixtures: a small trained float model on the real digits data."""

from __future__ import annotations

import warnings

import pytest

warnings.filterwarnings("ignore", message="fast_hadamard_transform")


@pytest.fixture(scope="session")
def digits_splits():
    from brevitas_amed.training.data import digits

    return digits(seed=0)


@pytest.fixture(scope="session")
def trained_digits_cnn(digits_splits):
    """DigitsCNN trained for three epochs (about 2 s on 2 cores); do not mutate."""
    import torch
    from torch.utils.data import DataLoader

    from brevitas_amed.training.models import build_model

    torch.manual_seed(0)
    model = build_model("digits_cnn", 10, in_channels=1)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    loader = DataLoader(digits_splits.train, batch_size=64, shuffle=True)
    for _ in range(3):
        for x, y in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A real PostgreSQL server of the tests' own (pgserver), as a SQLAlchemy URL."""
    import pgserver  # a test dependency (the test extra): missing is a failure, not a skip

    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    server.cleanup()
