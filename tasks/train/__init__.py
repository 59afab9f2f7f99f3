"""Training: accepted partitions → deterministic split → xgboost.dask → a registered model
version.

``features`` turns rows into model inputs and draws the split, ``metrics`` scores
predictions, ``distributed`` trains and predicts on the stage's cluster, ``checkpoint``
saves and resumes boosting, ``plan`` decides what to train (and whether to warm-start the
champion), ``register`` trains and registers, ``progress`` follows the rounds, ``report``
and ``publish`` show the result, and ``tasks`` holds the Prefect tasks the train flow runs.
"""
