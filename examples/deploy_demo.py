"""corosnap deploy demo: a bug fixed while a workflow is suspended, the run finishes on the fix.

    python examples/deploy_demo.py            # or: make demo-deploy

Version 1 of a billing workflow charges an order's lines one by one, waits
for the payment to settle (a durable sleep), then writes the invoice.  Its
invoice forgets the shipping fee.  Process 1 runs it on version 1 until the
run sleeps, checkpointed in a SQLite store, and exits.  Then the bug is fixed
*after* the step the run is suspended at and version 2 is deployed: the demo
runs ``corosnap check`` on the store with the new code (the deploy gate), and
process 2, on version 2, resumes the run: it migrates onto the new code and
writes the fixed invoice.  No flag, no replay: the scheduler kept the
description of version 1 in the store when it checkpointed it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap

V1 = '''
"""billing, version 1."""
from corosnap.scheduler import Scheduler, call, sleep
from corosnap.stores import SQLiteStore

sched = Scheduler(SQLiteStore({db!r}), workers=0)

PRICES = {{"book": 12.0, "pen": 1.5, "lamp": 30.0}}


@sched.function
def charge(line):
    item, qty = line
    return PRICES[item] * qty


@sched.workflow
async def invoice(order):
    total = 0.0
    for line in order["lines"]:
        total += await call(charge, line)
    await sleep(0.5)  # the payment settles
    return {{"order": order["id"], "total": total}}
'''

# The fix: the shipping fee, added after the step the run is suspended at.
V2 = V1.replace('"""billing, version 1."""', '"""billing, version 2: shipping is billed."""'
                ).replace(
    '''    return {{"order": order["id"], "total": total}}''',
    '''    shipping = 4.0 if total < 50 else 0.0
    return {{"order": order["id"], "total": total + shipping, "shipping": shipping}}''')

PROCESS_1 = """
import billing
run_id = billing.sched.start(billing.invoice, {"id": "A-17", "lines": [["book", 2], ["pen", 3]]},
                             run_id="A-17")
try:
    billing.sched.run_until_complete(timeout=0.2)
except TimeoutError:
    pass
print("  [process 1] run", run_id, "is", billing.sched.status(run_id).state,
      "- waiting on", billing.sched.status(run_id).waiting_on)
"""

PROCESS_2 = """
import billing
print("  [process 2]", billing.__doc__)
print("  [process 2] run A-17 is", billing.sched.status("A-17").state)
billing.sched.run_until_complete(timeout=30)
print("  [process 2] result:", billing.sched.result("A-17"))
"""


def run(code: str, path: str) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([path, os.environ.get("PYTHONPATH", "")]),
               PYTHONDONTWRITEBYTECODE="1")
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="corosnap-deploy-") as tmp:
        db = os.path.join(tmp, "runs.db")
        v1, v2 = os.path.join(tmp, "v1"), os.path.join(tmp, "v2")
        for path, source in ((v1, V1), (v2, V2)):
            os.makedirs(path)
            with open(os.path.join(path, "billing.py"), "w") as f:
                f.write(textwrap.dedent(source.format(db=db)))
        print("== version 1 is deployed; process 1 runs the workflow until it sleeps ==")
        run(PROCESS_1, v1)
        print("\n== the fix is deployed (version 2); the deploy gate checks the store ==")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([v2, os.environ.get("PYTHONPATH", "")]),
                   PYTHONDONTWRITEBYTECODE="1")
        gate = subprocess.run([sys.executable, "-m", "corosnap", "check", f"sqlite:{db}"],
                              env=env, capture_output=True, text=True)
        for line in gate.stdout.splitlines():
            print("  " + line)
        print(f"  (exit status {gate.returncode}: {'deploy' if gate.returncode == 0 else 'stop'})")
        print("\n== process 2, on version 2, resumes the run ==")
        run(PROCESS_2, v2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
