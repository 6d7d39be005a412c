"""Which version answers a request: one routing policy per model (docs/routing.md).

A model with no stored route has the default one (:func:`.policy.default_route`:
production, else the previous production, else the newest registered version). A stored
route (:mod:`.spec`, kept in the registry by :mod:`.store`) is a weighted split, a canary
with a step plan, shadows, a bandit or a sticky split; :mod:`.policies` turns it into the
object the request path asks, and :mod:`.controller` analyses canaries, re-weights
bandits and collects rewards off that path.

Nothing is imported here: the settings module imports :mod:`.settings`, and the runtime
imports :mod:`.policy`, without pulling the rest of the package in.
"""
