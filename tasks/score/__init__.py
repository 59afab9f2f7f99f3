"""Scoring: the champion (or a named version) put to work on new landing files, and drift.

``model`` resolves and checks the model before any data is read, ``predict`` turns rows
into predictions and explanations on a worker, ``split`` scores one split of landing files
(read, checked, predicted, profiled, written), ``drift`` and ``realized`` compare the
scored rows with the model's training profile and test metrics, ``manifest`` writes what a
run scored (last), ``publish`` shows it and emits the drift event, and ``tasks`` holds the
Prefect tasks the score flow runs. It reuses ingestion's landing listing, splits and
readers, and validation's expectations: one way to read a file, not two.
"""
