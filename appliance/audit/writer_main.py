"""``python -m appliance.audit.writer_main``: the audit writer process (:mod:`.writer_process`);
a module of its own so that running it does not import it twice."""

import sys

from .writer_process import main

sys.exit(main())
