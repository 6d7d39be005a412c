"""The alerts fixtures live in alerting.py (a unique module name: several test folders
have a conftest, so tests import helpers from there, not from "conftest")."""

from alerting import *  # noqa: F403
