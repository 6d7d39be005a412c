"""Helpers for the appliance's tests: small, real model files built offline."""
