"""The pipeline's logic, in layers. Imports flow one way, from the top of this list down
(``make lint`` checks it with import-linter, counting imports inside functions):

``pipeline``            what a whole run did: its result, stage clock and run metrics.
``lakeops``             keeping the lake for years: gc, verify, backup, lineage; it reads
                        every stage's records.
``score`` ``promote`` ``train`` ``validate`` ``ingest``
                        one folder per stage, mirroring ``flows/``: plain logic modules, a
                        ``publish`` module for the stage's own artifacts and a ``tasks`` module
                        of thin Prefect tasks that the stage's flow imports. A stage may use
                        an earlier stage (train reads validation reports; scoring reads and
                        checks files as ingest and validate do), never a later one.
``runtime``             what any stage runs on and knows no stage: cluster plans and sizing
                        (pure), reachability probes, Kubernetes resources, the stage task
                        runner, caching, progress, publishing basics, Dask reports.
``blocks`` (top level)  Prefect Blocks: typed configuration only.
shared basics           ``spec`` (the dataset spec), ``lake`` and ``storage`` (where data
                        lives), ``records`` (the typed objects that cross task and flow
                        boundaries), ``errors``, ``retries``, ``demo_data``.

Above them all: ``flows/`` (orchestration only) and ``deployments/`` (how flows start).
Heavy third-party libraries (Great Expectations, XGBoost, scikit-learn, Bokeh) are imported
inside the functions that use them, so that a run with nothing new never loads them.
"""
