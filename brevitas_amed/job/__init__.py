"""The whole job from one recipe, one module per step, typed records between them.

``recipe`` (the validated YAML) -> ``inputs`` (data, loaders, backend, output folder) ->
``float_model`` -> ``shared_weights`` -> ``context`` (the :class:`~brevitas_amed.job.context.Job`:
latency table, quality score) -> ``search`` (the Optuna study) -> ``finetune`` (fine-tune,
evaluate, export) -> ``summary`` and ``report``; ``run`` chains them, ``compare`` runs every
method on one recipe. ``records`` holds the dataclasses handed between the steps; ``storage`` opens
the study's storage (SQLite, PostgreSQL, journal file), ``workers`` starts local search workers,
``checkpoints`` writes files that survive kills and holds the output directory's lock.
"""
