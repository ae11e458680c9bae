"""Where every study of the job starts: the uniform allocations."""

from __future__ import annotations


def test_every_study_starts_at_uniform_widths_widest_first() -> None:
    from types import SimpleNamespace

    from brevitas_amed.job.search import start_allocations

    knobs = {"conv": SimpleNamespace(kind="weight", name="conv"), "act:relu": SimpleNamespace(kind="act", name="act:relu")}
    space = {"conv": [2, 3, 4, 8], "act:relu": [4, 8]}
    qmodel = SimpleNamespace(knobs=knobs, search_space=lambda: space)

    def job(trials: int):
        return SimpleNamespace(qmodel=qmodel, search_space=lambda: space,
                               recipe=SimpleNamespace(search=SimpleNamespace(trials=trials)))

    assert start_allocations(job(9)) == [{"w:conv": 8, "a:relu": 8}]  # a tenth of the budget, at least one
    assert start_allocations(job(120)) == [{"w:conv": 8, "a:relu": 8}, {"w:conv": 4, "a:relu": 4},
                                           {"w:conv": 3, "a:relu": 4}, {"w:conv": 2, "a:relu": 4}]
