"""The ModelDeployment API: the resource's spec and status as pydantic models, the condition
reasons, and the CRD and reference docs generated from them.

One source of truth: the CRD in crds/ and docs/modeldeployment.md are rendered from these
models (crd.py, docs.py), so what the API server enforces, what `kubectl explain` shows and
what the operator parses cannot drift apart. Pure: pydantic and PyYAML only.
"""
