"""The canary rollout: observed state in, the next plan out, and the checks a step is judged by.

One pure state machine (machine.py) decides each plan from the spec, the status, what the
tracks show and the user's commands; plans.py holds what a plan is made of, moves.py the
moves every plan is built from, shadow_step.py the shadow step, steps.py the live steps,
traffic.py the weight arithmetic without a mesh, and analysis.py the checks of a step's
telemetry window. Pure: nothing here reads or writes; the reconcile fetches the judgement
a plan asks for and applies what the plan says.
"""
