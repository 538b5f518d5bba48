"""raysweep: sweep HOI training recipes (DEFR, QPIC + HQM) with Ray Tune + Optuna over Ray Train."""

__version__ = "0.1.0"
