"""``python -m corosnap``: the ``corosnap`` command (see ``corosnap.cli``)."""

from corosnap.cli import main

raise SystemExit(main())
