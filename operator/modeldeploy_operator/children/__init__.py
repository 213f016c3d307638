"""The objects a ModelDeployment wants, and whether the cluster already has them.

Desired Deployments, Services and the shadow ConfigMap are built from the spec and the
operator settings (builders.py; the serving pod they run in pods.py; the names, labels and
annotations that find them again in labels.py), the canary's weights are written onto the
user's HTTPRoute (routes.py), and a semantic diff tells whether the cluster's copy already
says everything wanted (diffing.py). Pure: plain dicts in and out; the reconcile applies
what differs.
"""
