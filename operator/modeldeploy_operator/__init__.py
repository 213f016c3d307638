"""The modeldeploy operator: a ModelDeployment in; its Deployments, Services and status out.

Pure packages decide, thin modules do I/O, handlers only wire; the import contracts in
pyproject.toml keep it so. From the bottom up: api/ (the resource and its CRD), telemetry/
(what the serving pods counted), children/ (the objects a ModelDeployment wants), rollout/
and drift/ (the decisions), status/ (the status, observed and decided), then the I/O seams
k8s/ (the API server), reading/ (the pods' telemetry) and notifying.py (webhooks), and at
the top one reconcile (reconcile.py, with writes.py), the queue, the kopf handlers and the
`modeldeploy operator` entry point (cli.py).
"""
