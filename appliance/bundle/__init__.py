"""Air-gapped install bundles: ``appliance bundle build`` (see docs/install.md)."""

from .build import DEFAULT_EXTRAS, BundleInfo, BundleSpec, build_bundle
from .platforms import SUPPORTED, Target, host_target, parse_target
from .wheelhouse import BundleRefused

__all__ = ["DEFAULT_EXTRAS", "SUPPORTED", "BundleInfo", "BundleRefused", "BundleSpec",
           "Target", "build_bundle", "host_target", "parse_target"]
