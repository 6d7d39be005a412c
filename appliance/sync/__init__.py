"""Fleet sync on the box: pull the hub's TUF repository (over HTTP or from an air-gapped
bundle), verify it with ``tuf.ngclient``, and report back through an on-disk outbox.
Import the submodules directly; this package imports nothing."""
