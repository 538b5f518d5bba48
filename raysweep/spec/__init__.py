"""Search-space files: schema (`schema`), loading / overrides / validation (`load`)."""

from raysweep.spec.load import Sweep, load_sweep, parse_override

__all__ = ["Sweep", "load_sweep", "parse_override"]
