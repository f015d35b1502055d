"""corosnap's fuzzing campaign: developer tools, not part of the wheel.

- ``corosnap_fuzz.fuzz``: the campaign (``python -m corosnap_fuzz``, or
  ``make fuzz``); its docstring says how it works.
- ``corosnap_fuzz.zoo``: the generators and coroutines it takes real blobs
  from (importable by name, so snapshots of them can be restored).

Run from the repository with ``tools/`` on ``PYTHONPATH`` (the Makefile and
the test suite do that).
"""
