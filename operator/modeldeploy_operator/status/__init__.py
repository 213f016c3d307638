"""A ModelDeployment's status: what its children show, and the status decided from that.

observe.py reads the watch caches' copies of the Deployments and pods (grouped per track)
and says what they show; decide.py turns that, the rollout's plan and the drift evaluation
into the whole new status; conditions.py merges conditions kstatus style and says which
transitions are worth an Event. Pure: the reconcile writes the status, once, when it
changed.
"""
