"""What the serving pods counted, in the shapes every judgement reads.

The telemetry contract's reading side: the seam a telemetry source fills (sources.py), one
pod's counters at a read (counters.py), the window between two reads, per track
(windows.py), the shadow step's evidence within the stable track's window (shadowing.py),
and the statistics over binned counts that canary analysis and drift share (stats.py).
Pure: no I/O here; the sources that read pods or Prometheus, and the checks that judge
these windows, live elsewhere.
"""
