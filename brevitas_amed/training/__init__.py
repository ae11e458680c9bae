"""Training plumbing shared by the job and the strategies: datasets, float models, loops.

* :mod:`~brevitas_amed.training.data`: the built-in digits, ImageFolder and synthetic splits.
* :mod:`~brevitas_amed.training.models`: float models by name (torchvision, ``digits_cnn``,
  ``module:function``) and weight loading.
* :mod:`~brevitas_amed.training.loops`: training (optionally distilled, optionally at random
  bits every batch) and evaluation.
"""
