"""Drift: does the traffic still look like the data the model was trained on, and what a
drift episode sets off.

assessment.py turns the reference profile and a window of binned live counts into a
verdict per feature, for the predictions and for the deployment (the operator and the
offline `modeldeploy drift` share it); retraining.py keeps the drift episodes, builds the
drift report, its signature and the retraining Job. Pure: the report is sent by
notifying.py and the Job created by the reconcile, at the package's top.
"""
