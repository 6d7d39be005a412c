"""The drift fixtures live in drifting.py (a unique module name: several test folders
have a conftest, so tests import helpers from there, not from "conftest")."""

from drifting import *  # noqa: F403
