"""Leak check: many mixed requests through nginx and the pool, sampling each worker's resident memory,
open file descriptors and threads as they go.

    python leaks.py [--requests 100000] [--clients 16] [--every 10000]

The mix: plain and streamed answers (the built-in mock and the upstream), refusals (a wrong key, bad
JSON, a model not allowed, an upstream 500), and clients that leave in the middle of a stream. Prints one
line per sample and, at the end, whether memory, descriptors and threads stayed flat after the warm-up
(growth from the second sample to the last under 15 % of memory, 8 descriptors, 4 threads per worker).
"""

import argparse
import json
import os
import sys
import threading
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from conftest import Stack  # noqa: E402

TENANT = "acme"


def one(stack, c, n):
    key = stack.keys[TENANT]
    good = {"Authorization": f"Bearer {key}"}
    path = f"/tenant/{TENANT}/v1/chat/completions"
    kind = n % 10
    body = {"model": "mock-small", "messages": [{"role": "user", "content": f"leak check {n}"}]}
    if kind == 0:
        return c.post(path, json={**body, "model": "fast"}, headers=good).status_code
    if kind == 1:
        return c.post(path, json=body, headers={"Authorization": "Bearer tg_wrong"}).status_code
    if kind == 2:
        return c.post(path, content=b'{"model": ', headers={**good, "Content-Type": "application/json"}).status_code
    if kind == 3:
        return c.post(path, json={**body, "model": "not-mine"}, headers=good).status_code
    if kind == 4:
        failing = {"role": "user", "content": "fail #mock " + json.dumps({"status": 500})}
        return c.post(path, json={**body, "model": "fast", "messages": [failing]}, headers=good).status_code
    if kind in (5, 6):
        with c.stream("POST", path, json={**body, "stream": True}, headers=good) as r:
            if kind == 6:
                # Leave after the first bytes: the worker sees the client gone.
                next(r.iter_bytes(), None)
                return r.status_code
            r.read()
            return r.status_code
    return c.post(path, json=body, headers=good).status_code


def sample(stack):
    out = {}
    for pid in stack.worker_pids():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
            threads = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads")))
            fds = len(os.listdir(f"/proc/{pid}/fd"))
            out[pid] = {"rss_kib": rss, "fds": fds, "threads": threads}
        except (OSError, StopIteration):
            pass
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--every", type=int, default=10_000)
    args = parser.parse_args()
    stack = Stack(workers=2, threads=64).start()
    try:
        lock = threading.Lock()
        counter = {"next": 0, "done": 0, "statuses": {}}
        samples = [(0, sample(stack))]

        def client():
            with stack.client() as c:
                while True:
                    with lock:
                        n = counter["next"]
                        if n >= args.requests:
                            return
                        counter["next"] += 1
                    try:
                        status = one(stack, c, n)
                    except httpx.HTTPError as e:
                        status = type(e).__name__
                    with lock:
                        counter["done"] += 1
                        counter["statuses"][status] = counter["statuses"].get(status, 0) + 1
                        if counter["done"] % args.every == 0:
                            samples.append((counter["done"], sample(stack)))
                            print(counter["done"], json.dumps(samples[-1][1]), flush=True)

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print("statuses", json.dumps(counter["statuses"]))
        problems = []
        first, last = samples[1][1] if len(samples) > 2 else samples[0][1], samples[-1][1]
        for pid, end in last.items():
            start = first.get(pid)
            if not start:
                problems.append(f"worker {pid} was replaced during the run")
                continue
            if end["rss_kib"] > start["rss_kib"] * 1.15:
                problems.append(f"worker {pid}: RSS {start['rss_kib']} → {end['rss_kib']} KiB")
            if end["fds"] > start["fds"] + 8:
                problems.append(f"worker {pid}: descriptors {start['fds']} → {end['fds']}")
            if end["threads"] > start["threads"] + 4:
                problems.append(f"worker {pid}: threads {start['threads']} → {end['threads']}")
        for p in problems:
            print("PROBLEM:", p)
        print("flat" if not problems else f"{len(problems)} problems")
        return 1 if problems else 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
