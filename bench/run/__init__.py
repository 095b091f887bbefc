"""How a study runs: its settings, the plan (one Cell per configuration-trial), the runner, launch and process trees,
the lock, provenance, nodes.
"""
