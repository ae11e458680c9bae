"""The job's search space: study parameters and their knobs, pinned widths, the size limit, and
the allocations every study starts with."""

from __future__ import annotations

import optuna

from brevitas_amed.job.context import Job
from brevitas_amed.job.recipe import RecipeError
from brevitas_amed.quant import Knob
from brevitas_amed.search import ModelSizeLimit

WEIGHT_PREFIX, ACT_PREFIX = "w:", "a:"


def param_name(knob: Knob) -> str:
    """The study parameter of a knob: ``w:<layer>`` or ``a:<module>``."""
    return WEIGHT_PREFIX + knob.name if knob.kind == "weight" else ACT_PREFIX + knob.name.removeprefix("act:")


def knob_name(param: str) -> str:
    """The knob of a study parameter (inverse of :func:`param_name`)."""
    return param[len(WEIGHT_PREFIX):] if param.startswith(WEIGHT_PREFIX) else "act:" + param[len(ACT_PREFIX):]


def search_params(job: Job) -> dict[str, list[int]]:
    """``{parameter: bit choices}`` for every knob of the job's search space, in execution order
    (with ``search.bit_choices: latency_levels``, those left more than one width)."""
    levels = job.recipe.search.bit_choices == "latency_levels"
    return {param_name(job.qmodel.knobs[k]): list(choices) for k, choices in job.search_space().items()
            if len(choices) > 1 or not levels}


def pinned_bits(job: Job) -> dict[str, int]:
    """``{knob: bits}`` of the searchable knobs the latency levels leave one width (a knob that
    feeds no layer's cost, or whose every width costs the same): no study parameter, set with every
    trial's parameters. Empty with ``search.bit_choices: all``, where every knob is a parameter."""
    if job.recipe.search.bit_choices != "latency_levels":
        return {}
    return {k: choices[0] for k, choices in job.search_space().items() if len(choices) == 1}


def allocation(job: Job, params: dict[str, int]) -> dict[str, int]:
    """``{knob: bits}`` of a trial's parameters, pinned knobs included."""
    return {**pinned_bits(job), **{knob_name(p): int(v) for p, v in params.items()}}


def size_constraint(job: Job) -> ModelSizeLimit | None:
    """The size limit on the sampler's parameters. Weights no parameter moves (pinned layers, a
    knob with one choice) are a fixed offset."""
    if job.quality.max_size_bits is None:
        return None
    q, params = job.qmodel, search_params(job)
    moved = {param_name(q.knobs[k]): n for k, n in q.weight_counts().items()
             if len(params.get(param_name(q.knobs[k]), ())) > 1}  # a one-choice parameter is no chain coordinate
    if not moved:
        return None
    base = {**q.get_knob_bits(), **pinned_bits(job), **{knob_name(p): c[0] for p, c in params.items() if len(c) == 1}}
    offset = q.weight_size_bits(base) - sum(n * base[knob_name(p)] for p, n in moved.items())
    return job.quality.size_constraint(moved, offset_bits=offset)


SPACE_ATTR = "search_params"


def check_space(job: Job, study: optuna.Study) -> None:
    """Store the study's parameters and choices when it is new; refuse to resume one stored with
    others. The latency levels follow the latency table, which the resume stamp does not cover (a
    simulator version, a hardware cache, a worker on another machine).

    Raises:
        RecipeError: The stored study was searched over other bit choices.
    """
    params = search_params(job)
    stored = study.user_attrs.get(SPACE_ATTR)
    if stored is None:
        study.set_user_attr(SPACE_ATTR, params)
    elif stored != params:
        changed = sorted(p for p in set(stored) | set(params) if stored.get(p) != params.get(p))
        raise RecipeError(f"study {study.study_name!r} was searched over other bit choices ({', '.join(changed[:3])}"
                          f"{' ...' if len(changed) > 3 else ''}); the latency table gives other levels now: set "
                          f"output_dir to a new folder, or search.bit_choices: all")


def start_allocations(job: Job) -> list[dict[str, int]]:
    """The uniform allocations every study starts with, widest first (uniform max bits is always the
    first): one per width while they take at most a tenth of the trial budget; a knob without that
    width takes its next wider choice (at latency levels: the widest of the width's level). AMED's chain starts at
    the best of them, rather than walking down from 8 bits one step at a time; every sampler gets
    the same ones, so the comparison stays fair."""
    params = search_params(job)
    widths = sorted({b for c in params.values() for b in c}, reverse=True)
    picked: list[dict[str, int]] = []
    for b in widths[:max(1, job.recipe.search.trials // 10)]:
        uniform = {p: min((x for x in c if x >= b), default=max(c)) for p, c in params.items()}
        if uniform not in picked:
            picked.append(uniform)
    return picked
