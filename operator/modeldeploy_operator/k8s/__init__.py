"""The operator's seam to the Kubernetes API: every call it makes to the API server.

client.py applies, creates, deletes and patches what the pure packages decided, posts
Events and reads a webhook's signing Secret, each call thin and off the event loop;
leadership.py holds the Lease that lets one operator pod of several reconcile. The watches
are kopf's (handlers.py); nothing here decides what a ModelDeployment's objects should be.
"""
