"""Online experiments across a model's versions: bandit allocation (Thompson sampling with
guardrails), the sample-ratio-mismatch check, and the SQLite store of assignments and their
delayed rewards. Import the submodules directly (``appliance.experiments.bandit``,
``.srm``, ``.rewards``); this package imports nothing, so loading it costs nothing.
"""
