"""AMED's search: a Metropolis-Hastings Optuna sampler and the quality score it maximises.

Importing this package loads Optuna but neither torch nor brevitas.
"""

from brevitas_amed.search.annealing import GeometricAnnealing
from brevitas_amed.search.quality import ModelSizeLimit, QualityScore, binomial_noise
from brevitas_amed.search.sampler import AMEDSampler

__all__ = ["AMEDSampler", "GeometricAnnealing", "ModelSizeLimit", "QualityScore", "binomial_noise"]
