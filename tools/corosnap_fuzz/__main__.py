"""``python -m corosnap_fuzz`` (with ``tools/`` on ``PYTHONPATH``; ``make fuzz``)."""

import sys

from corosnap_fuzz.fuzz import _reexec_with_fixed_hash_seed, main

_reexec_with_fixed_hash_seed()
sys.exit(main())
