"""The experiment on disk: folder layout and file names, storage URIs and atomic writes, metadata and versions, the
Optuna study file and the per-class files. `sweep` writes an experiment and `results` reads it; both import this
layer, neither imports the other."""
