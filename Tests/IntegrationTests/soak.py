"""Crash soak: concurrent clients (half streaming, both client APIs) against a pool whose workers are killed
with SIGKILL at random, then an audit of the books.

    python soak.py [--minutes N] [--clients 64] [--workers 8] [--kill-every-ms 200]

(`scripts/soak` runs it; `test_soak.py` runs a one-minute version in `scripts/test`.)

The books are exact when, after the load and after every reservation a killed worker left has expired:
- every request the client saw succeed (a whole JSON answer, or a stream that reached its end) has exactly
  one execution row, and no request id has two;
- the tenant's used tokens and USD in the budget counters equal the sums of its execution rows, per day;
- nothing is held any more (no reservation row, reserved counters at 0), so no hold outlived its expiry;
- `PRAGMA integrity_check` is ok.
"""

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from conftest import Stack, wait_until  # noqa: E402

TENANT = "priced"


class Soak:
    def __init__(self, stack, clients, kill_every_ms, seconds):
        self.stack = stack
        self.clients = clients
        self.kill_every_ms = kill_every_ms
        self.seconds = seconds
        self.lock = threading.Lock()
        self.succeeded = []  # request ids the client saw succeed
        self.failed = {}  # what the client saw instead, counted
        self.kills = 0
        self.stop = threading.Event()

    def note_failure(self, kind):
        with self.lock:
            self.failed[kind] = self.failed.get(kind, 0) + 1

    def one(self, c, i, n):
        stream = i % 2 == 1
        anthropic = i % 4 >= 2
        # A stream of 4 pieces 5 ms apart, so kills land mid-stream too.
        text = f"soak {i}-{n} #mock " + json.dumps({"chunk_delay_ms": 5})
        key = self.stack.keys[TENANT]
        if anthropic:
            path, headers = f"/tenant/{TENANT}/v1/messages", {"x-api-key": key, "anthropic-version": "2023-06-01"}
            body = {"model": "fast", "max_tokens": 16, "stream": stream, "messages": [{"role": "user", "content": text}]}
        else:
            path, headers = f"/tenant/{TENANT}/v1/chat/completions", {"Authorization": f"Bearer {key}"}
            body = {"model": "fast", "stream": stream, "messages": [{"role": "user", "content": text}]}
        try:
            if not stream:
                r = c.post(path, json=body, headers=headers)
                if r.status_code == 200 and ("choices" in r.json() or "content" in r.json()):
                    return r.headers.get("x-request-id"), None
                return None, f"status {r.status_code}"
            with c.stream("POST", path, json=body, headers=headers) as r:
                if r.status_code != 200:
                    r.read()
                    return None, f"status {r.status_code}"
                ended = errored = False
                for line in r.iter_lines():
                    if line in ("data: [DONE]", "event: message_stop"):
                        ended = True
                    if line == "event: error" or line.startswith('data: {"error"'):
                        errored = True
                if ended and not errored:
                    return r.headers.get("x-request-id"), None
                return None, "stream cut" if not errored else "stream error event"
        except httpx.HTTPError as e:
            return None, type(e).__name__

    def client(self, i):
        n = 0
        with self.stack.client() as c:
            while not self.stop.is_set():
                n += 1
                rid, failure = self.one(c, i, n)
                if rid:
                    with self.lock:
                        self.succeeded.append(rid)
                else:
                    self.note_failure(failure)

    def killer(self):
        while not self.stop.wait(self.kill_every_ms / 1000):
            pids = self.stack.worker_pids()
            if pids:
                try:
                    os.kill(random.choice(pids), signal.SIGKILL)
                    self.kills += 1
                except ProcessLookupError:
                    pass

    def run(self):
        threads = [threading.Thread(target=self.client, args=(i,)) for i in range(self.clients)]
        killer = threading.Thread(target=self.killer)
        for t in threads:
            t.start()
        killer.start()
        time.sleep(self.seconds)
        self.stop.set()
        killer.join()
        for t in threads:
            t.join()
        return self

    def audit(self, wait_for_expiry=True):
        """The books, after every hold a killed worker left has expired; returns a report (and problems)."""
        s = self.stack
        problems = []
        # Every worker alive again, and the survivors' leases retired (they admit for 2 s, then settle).
        wait_until(lambda: len(s.worker_pids()) == s.workers, timeout=30)
        if wait_for_expiry:
            # Holds of killed workers expire (backend timeout + 60 s, + the lease's 2 s) and a worker's sweep
            # (every 5 s) releases them.
            latest = s.sql("SELECT COALESCE(MAX(expires_ms), 0) FROM reservations")[0][0]
            wait_s = max(0.0, latest / 1000 - time.time()) + 15
            wait_until(lambda: not s.sql("SELECT 1 FROM reservations"), timeout=wait_s, interval=1)
            left = s.sql("SELECT COUNT(*), COALESCE(MIN(expires_ms), 0) FROM reservations")[0]
            if left[0]:
                problems.append(f"{left[0]} reservations still held (earliest expiry {left[1]}, now "
                                f"{int(time.time() * 1000)})")
            reserved = s.sql("SELECT COALESCE(SUM(reserved_tokens), 0), COALESCE(SUM(reserved_nano), 0) "
                             "FROM budget_counters")[0]
            if tuple(reserved) != (0, 0):
                problems.append(f"reserved counters not back to 0: {reserved}")
        rows = dict(s.sql("SELECT request_id, COUNT(*) FROM executions WHERE tenant = ? GROUP BY request_id",
                          TENANT))
        doubled = [rid for rid, n in rows.items() if n != 1]
        if doubled:
            problems.append(f"{len(doubled)} request ids with more than one execution row, e.g. {doubled[:3]}")
        missing = [rid for rid in self.succeeded if rid not in rows]
        if missing:
            problems.append(f"{len(missing)} requests the client saw succeed have no execution row, "
                            f"e.g. {missing[:3]}")
        per_day = s.sql(
            "SELECT 'd:' || date(at_ms / 1000, 'unixepoch'), SUM(tokens_in + tokens_out), SUM(cost_nano) "
            "FROM executions WHERE tenant = ? AND (tokens_in + tokens_out > 0 OR status BETWEEN 200 AND 299) "
            "GROUP BY 1", TENANT)
        counters = {p: (t, n) for p, t, n in s.sql(
            "SELECT period, used_tokens, used_nano FROM budget_counters WHERE scope = ?", f"tenant:{TENANT}")}
        for day, tokens, nano in per_day:
            if counters.get(day, (0, 0)) != (tokens, nano):
                problems.append(f"{day}: counters {counters.get(day)} but rows sum to {(tokens, nano)}")
        if len(self.succeeded) < self.clients:
            problems.append(f"only {len(self.succeeded)} requests succeeded: the soak proved nothing")
        integrity = s.sql("PRAGMA integrity_check")[0][0]
        if integrity != "ok":
            problems.append(f"integrity_check: {integrity}")
        # A worker killed in the middle of a log line leaves it torn (its fragment, then the next line); at
        # most one such line per kill, and the line after the fragment is still read.
        torn = []
        log = s.app_log(torn=torn)
        if len(torn) > self.kills:
            problems.append(f"{len(torn)} torn log lines for {self.kills} kills, e.g. {torn[:2]}")
        report = {
            "seconds": self.seconds, "clients": self.clients, "workers": s.workers, "kills": self.kills,
            "succeeded": len(self.succeeded), "failed": self.failed, "execution_rows": sum(rows.values()),
            "died_logged": sum(1 for e in log if e.get("msg") == "worker_died"), "torn_log_lines": len(torn),
        }
        return report, problems


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--kill-every-ms", type=int, default=200)
    args = parser.parse_args()
    stack = Stack(workers=args.workers, threads=32).start()
    try:
        soak = Soak(stack, args.clients, args.kill_every_ms, args.minutes * 60).run()
        report, problems = soak.audit()
        print(json.dumps(report, indent=2))
        for p in problems:
            print("PROBLEM:", p)
        print("books exact" if not problems else f"{len(problems)} problems")
        return 1 if problems else 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
