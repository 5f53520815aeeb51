"""A one-minute crash soak (scripts/soak runs longer ones): 64 clients, half streaming, both client APIs,
8 workers, one killed with SIGKILL every 200 ms; then the books must be exact (see soak.py)."""

import json

from conftest import Stack
from soak import Soak


def test_books_are_exact_after_a_minute_of_kill_9():
    stack = Stack(workers=8, threads=32).start()
    try:
        soak = Soak(stack, clients=64, kill_every_ms=200, seconds=60).run()
        report, problems = soak.audit()
        print(json.dumps(report))
        assert soak.kills >= 100, report
        assert not problems, (problems, report)
    finally:
        stack.stop()
