"""Benchmarks: the pipeline side by side with a plain script (``make bench``)."""
