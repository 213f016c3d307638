"""Reading the serving pods for a judgement: the telemetry reader, and the judge that holds
the readings between the start and the end of a window.

A TelemetrySource (telemetry/sources.py) is filled by scraping.py (each pod's /metrics, the
default) or querying.py (a Prometheus server's query API); judging.py reads through it when
the rollout plan or the drift interval says a judgement is due, never on a watch event,
asks the pods for their model metadata and reference profile, and hands the windows to the
pure checks (rollout/analysis.py, drift/assessment.py). I/O over aiohttp; no decisions.
"""
