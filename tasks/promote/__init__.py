"""Promotion: judge a candidate against the champion on the candidate's test rows and move
the champion alias if it wins.

``decide`` gathers the inputs and takes the decision (pure), ``rescore`` scores the champion
on the cluster when its score is not known, ``lock`` serializes promotions of one model,
``card`` writes the model card, ``publish`` shows it, and ``tasks`` holds the Prefect tasks
the promote flow runs (the alias move is undone if recording the decision fails).
"""
