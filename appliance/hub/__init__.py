"""The fleet hub: what each box should run and the signed artifacts, published as a TUF
repository of static files (``tuf_repo``), plus the hub's own API for reports, enrolments
and operator commands. Import the submodules directly; this package imports nothing."""
