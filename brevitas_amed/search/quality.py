"""AMED's quality score: accuracy traded against latency, under an accuracy floor and a size cap.

The score (Kimhi et al., "AMED: Automatic Mixed-Precision Quantization for Edge Devices",
Mathematics 2024, arXiv 2205.15437) of a bit allocation with accuracy ``a`` and latency ``L``:

.. code-block:: text

    Q(a, L) = a - beta * L / L_ref - penalty * max(0, threshold - a) ** penalty_power

``L_ref`` is the latency of the uniform 8-bit model, so ``L / L_ref`` is the fraction of the
8-bit latency left and ``beta`` is the accuracy one would give for removing all of it. The
penalty term is zero above the accuracy threshold and below it grows with the shortfall:
linearly at the default ``penalty_power`` of 1 (an exact penalty: the score drops by ``penalty``
per unit of accuracy lost, so it falls steadily, not ever faster), and ever faster only for a
``penalty_power`` above 1. A model over
the size limit is not scored at all: :meth:`QualityScore.check_size` prunes its trial before the
accuracy is computed, and :meth:`QualityScore.size_constraint` keeps the sampler from proposing
it in the first place.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import optuna


class QualityScore:
    """AMED's quality score for a two-objective study over ``(accuracy, latency)``.

    Calling the instance on a trial's values returns the score to maximise, so it can be the
    ``scalarization`` of :class:`~brevitas_amed.search.AMEDSampler` for a study created with
    ``directions=["maximize", "minimize"]`` whose objective returns ``(accuracy, latency)``.

    Args:
        beta: Accuracy traded for the whole uniform 8-bit latency; ``beta >= 0``.
        reference_latency: Latency of the uniform 8-bit model, in the objective's units.
        accuracy_threshold: Accuracy below which the penalty applies; ``None`` for no penalty.
            Same units as the accuracy (a fraction in ``[0, 1]`` for the pipeline).
        penalty: Weight of the penalty; ``penalty >= 0``.
        penalty_power: Exponent of the shortfall in the penalty; ``penalty_power >= 1``. The
            default 1 is an exact penalty: with ``penalty`` above the largest accuracy one
            would trade per unit of ``beta * L / L_ref``, no allocation under the threshold
            outscores the best one that meets it.
        max_size_bits: Hard limit on the model size in bits; ``None`` for no limit.

    Raises:
        ValueError: If an argument is out of its range.
    """

    def __init__(
        self,
        beta: float,
        reference_latency: float,
        accuracy_threshold: float | None = None,
        penalty: float = 10.0,
        penalty_power: float = 1.0,
        max_size_bits: float | None = None,
    ) -> None:
        _check("beta", beta, lambda v: v >= 0, "a finite float >= 0")
        _check("reference_latency", reference_latency, lambda v: v > 0, "a finite float > 0")
        _check("penalty", penalty, lambda v: v >= 0, "a finite float >= 0")
        _check("penalty_power", penalty_power, lambda v: v >= 1, "a finite float >= 1")
        if accuracy_threshold is not None:
            _check("accuracy_threshold", accuracy_threshold, lambda v: True, "a finite float or None")
        if max_size_bits is not None:
            _check("max_size_bits", max_size_bits, lambda v: v > 0, "a finite float > 0 or None")
        self.beta = float(beta)
        self.reference_latency = float(reference_latency)
        self.accuracy_threshold = accuracy_threshold
        self.penalty = float(penalty)
        self.penalty_power = float(penalty_power)
        self.max_size_bits = max_size_bits

    def __repr__(self) -> str:
        return (
            f"QualityScore(beta={self.beta}, reference_latency={self.reference_latency}, "
            f"accuracy_threshold={self.accuracy_threshold}, penalty={self.penalty}, "
            f"penalty_power={self.penalty_power}, max_size_bits={self.max_size_bits})"
        )

    def score(self, accuracy: float, latency: float) -> float:
        """The quality score ``Q(accuracy, latency)``; higher is better.

        Args:
            accuracy: Accuracy of the allocation.
            latency: Latency of the allocation, in the units of ``reference_latency``.

        Returns:
            The score; NaN inputs give NaN.
        """
        quality = accuracy - self.beta * latency / self.reference_latency
        if self.accuracy_threshold is not None:
            shortfall = max(0.0, self.accuracy_threshold - accuracy)
            quality -= self.penalty * shortfall**self.penalty_power
        return quality

    def __call__(self, values: Sequence[float]) -> float:
        """The score of a trial's ``(accuracy, latency)`` values.

        Args:
            values: The trial's values; the first is accuracy, the second latency.

        Returns:
            :meth:`score` of the two values.

        Raises:
            ValueError: If there are not exactly two values.
        """
        if len(values) != 2:
            raise ValueError(
                f"QualityScore scores (accuracy, latency) pairs; got {len(values)} values."
            )
        return self.score(values[0], values[1])

    def within_size(self, size_bits: float) -> bool:
        """Whether a model of ``size_bits`` bits respects ``max_size_bits``."""
        return self.max_size_bits is None or size_bits <= self.max_size_bits

    def check_size(self, size_bits: float) -> None:
        """Prune the trial of a model over the size limit, before its accuracy is computed.

        Call it in the objective as soon as the allocation's size is known.

        Args:
            size_bits: The model size in bits.

        Raises:
            optuna.TrialPruned: If ``size_bits`` exceeds ``max_size_bits``.
        """
        if not self.within_size(size_bits):
            raise optuna.TrialPruned(
                f"model size {size_bits:.0f} bits exceeds the limit of {self.max_size_bits:.0f}"
            )

    def size_constraint(self, weight_counts: Mapping[str, int], offset_bits: float = 0.0) -> ModelSizeLimit:
        """A sampler ``constraint`` enforcing ``max_size_bits`` before any trial runs.

        Args:
            weight_counts: Number of weights set by each bit-width parameter, by parameter name
                (for example ``{"w:conv1": 9408, ...}``).
            offset_bits: Bits of the weights no parameter sets (layers pinned by a policy).

        Returns:
            A :class:`ModelSizeLimit` for :class:`~brevitas_amed.search.AMEDSampler`'s ``constraint``.

        Raises:
            ValueError: If this score has no ``max_size_bits``.
        """
        if self.max_size_bits is None:
            raise ValueError("`max_size_bits` is None; there is no size limit to enforce.")
        return ModelSizeLimit(weight_counts, self.max_size_bits, offset_bits)


class ModelSizeLimit:
    """Feasibility test ``offset_bits + sum(weight_counts[p] * params[p]) <= max_size_bits``.

    Args:
        weight_counts: Number of weights set by each bit-width parameter, by parameter name.
        max_size_bits: The largest allowed model size in bits.
        offset_bits: Bits of the weights no parameter sets (for example layers a policy pins).

    Raises:
        ValueError: If ``weight_counts`` is empty or has a negative count, or ``max_size_bits``
            is not positive.
    """

    def __init__(self, weight_counts: Mapping[str, int], max_size_bits: float, offset_bits: float = 0.0) -> None:
        if not weight_counts or any(count < 0 for count in weight_counts.values()):
            raise ValueError(
                f"`weight_counts` must be a non-empty mapping to counts >= 0, got {weight_counts!r}."
            )
        _check("max_size_bits", max_size_bits, lambda v: v > 0, "a finite float > 0")
        _check("offset_bits", offset_bits, lambda v: v >= 0, "a finite float >= 0")
        self.weight_counts = dict(weight_counts)
        self.max_size_bits = max_size_bits
        self.offset_bits = offset_bits

    def size_bits(self, params: Mapping[str, Any]) -> float:
        """Model size in bits of an allocation.

        Raises:
            KeyError: If ``params`` lacks a parameter of ``weight_counts``.
        """
        missing = [name for name in self.weight_counts if name not in params]
        if missing:
            raise KeyError(f"allocation has no bit width for {missing}; give weight_counts only for parameters the "
                           f"sampler moves and count the others in offset_bits")
        return self.offset_bits + float(sum(count * params[name] for name, count in self.weight_counts.items()))

    def __call__(self, params: Mapping[str, Any]) -> bool:
        return self.size_bits(params) <= self.max_size_bits


def _check(name: str, value: Any, in_range: Callable[[float], bool], allowed: str) -> None:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value) or not in_range(value):
        raise ValueError(f"`{name}` must be {allowed}, got {value!r}.")


def binomial_noise(accuracy: float, n_samples: int) -> float:
    """Standard error of an accuracy measured on ``n_samples`` examples: ``sqrt(a (1 - a) / n)``.

    The noise scale of one evaluation of a trial's accuracy, and so of the quality score above
    its threshold: differences smaller than this are as likely luck as signal. Temperatures of
    :class:`~brevitas_amed.search.AMEDSampler` are best set as multiples of it.

    Args:
        accuracy: Accuracy in ``[0, 1]`` (for example the accuracy threshold of the score).
        n_samples: Number of evaluated examples; at least 1.

    Returns:
        The standard error, in accuracy units; at least ``0.5 / n_samples`` (one half example),
        so an accuracy of 0 or 1 still gives a positive scale.

    Raises:
        ValueError: If ``accuracy`` is outside ``[0, 1]`` or ``n_samples < 1``.
    """
    _check("accuracy", accuracy, lambda v: 0 <= v <= 1, "a float in [0, 1]")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"`n_samples` must be an int >= 1, got {n_samples!r}.")
    return max(math.sqrt(accuracy * (1 - accuracy) / n_samples), 0.5 / n_samples)
