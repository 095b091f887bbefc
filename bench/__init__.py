"""bench: studies built on mgpu_core (the scaling sweep, reports, benchmarks)."""
