"""Self-checks behind `python -m bitsandbytes`: one small numeric check per op, per device,
against plain torch."""
from .registry import registered_ops, run_self_checks

__all__ = ["registered_ops", "run_self_checks"]
