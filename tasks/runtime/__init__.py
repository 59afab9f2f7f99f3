"""What every stage runs on, knowing no stage: cluster plans and runners, caching, progress,
publishing basics and Dask reports. Imports only ``blocks`` and the shared basics."""
