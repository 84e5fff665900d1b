"""Models: the interface every model answers (:mod:`~forecast.models.base`), the table of every
model by name (:mod:`~forecast.models.registry`) and the neural estimators (:mod:`~forecast.models.neural`).
The statistical and kNN baselines live in :mod:`forecast.models.baselines`."""
