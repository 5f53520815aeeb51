"""/metrics, log joining, trace propagation and log reopening."""

import gzip
import json
import re
import shutil
import signal
import subprocess
import time

import httpx
import pytest

from conftest import ROOT, wait_until


def auth(stack, tenant):
    return {"Authorization": f"Bearer {stack.keys[tenant]}"}


def post(c, stack, tenant, content="hello", model="mock-small", **kw):
    return c.post(f"/tenant/{tenant}/v1/chat/completions", headers={**auth(stack, tenant), **kw.pop("headers", {})},
                  json={"model": model, "messages": [{"role": "user", "content": content}], **kw})


def scrape(stack):
    r = httpx.get(stack.base + "/metrics", verify=False)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return r.text


def metric(text, name, **labels):
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(got.get(k) == str(v) for k, v in labels.items()):
            total += float(m.group(3))
            found = True
    return total if found else None


def test_metrics_match_requests_across_workers_and_a_restart(fresh_stack):
    s = fresh_stack
    with s.client() as c:
        for i in range(30):
            assert post(c, s, "globex", f"m {i}").status_code == 200
        for i in range(5):
            assert post(c, s, "globex", model="fast").status_code == 403
        assert wait_until(lambda: metric(scrape(s), "tenantgate_requests_total", tenant="globex", status="200") == 30)
        victim = s.worker_pids()[0]
        subprocess.run(["kill", "-KILL", str(victim)])
        assert wait_until(lambda: len(s.worker_pids()) == 2 and victim not in s.worker_pids(), timeout=5)
        for i in range(20):
            assert post(c, s, "globex", f"n {i}").status_code == 200
    text = None

    def counted():
        nonlocal text
        text = scrape(s)
        return metric(text, "tenantgate_requests_total", tenant="globex", model="mock-small", status="200") == 50

    assert wait_until(counted, timeout=5)
    assert metric(text, "tenantgate_requests_total", tenant="globex", model="fast", status="403") == 5
    executions = s.sql("SELECT COUNT(*), SUM(tokens_in), SUM(tokens_out) FROM executions "
                       "WHERE tenant = 'globex' AND status = 200")[0]
    assert metric(text, "tenantgate_tokens_total", tenant="globex", model="mock-small", type="input") == executions[1]
    assert metric(text, "tenantgate_tokens_total", tenant="globex", model="mock-small", type="output") == executions[2]
    assert metric(text, "tenantgate_request_duration_seconds_count", tenant="globex", model="mock-small") == 50
    assert metric(text, "tenantgate_request_duration_seconds_bucket", tenant="globex", model="mock-small",
                  le="+Inf") == 50
    assert metric(text, "tenantgate_cost_usd_total", tenant="globex", model="mock-small") > 0
    # The killed worker's heartbeat ages out after 5 s.
    assert wait_until(lambda: metric(scrape(s), "tenantgate_workers_alive") == 2, timeout=10)
    assert metric(text, "tenantgate_config_version") >= 1


def test_promtool_accepts_a_live_scrape(stack):
    with stack.client() as c:
        post(c, stack, "globex", "for promtool", model="mock-small")
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: scripts/test installs Debian's prometheus package")
    text = scrape(stack)
    assert "tenantgate_budget_remaining_usd" in text
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_rate_limited_metric(stack):
    # 'throttled' (2 requests a minute) is this test's own tenant: every refusal of it is counted here.
    with stack.client() as c:
        statuses = [post(c, stack, "throttled", "overflow", model="fast").status_code for _ in range(5)]
    assert statuses.count(200) == 2 and statuses.count(429) == 3
    assert wait_until(lambda: metric(scrape(stack), "tenantgate_rate_limited_total", tenant="throttled",
                                     limit="requests") == 3)


def test_metrics_answer_loopback_only(stack):
    assert "tenantgate_workers_alive" in scrape(stack)
    # Another loopback address is another client as far as nginx is concerned: not 127.0.0.1, so refused.
    other = httpx.Client(verify=False, transport=httpx.HTTPTransport(verify=False, local_address="127.0.0.2"))
    with other:
        refused = other.get(stack.base + "/metrics")
        assert refused.status_code == 403
        assert "tenantgate_" not in refused.text
        # Only the operator's route is closed to it.
        assert other.get(stack.base + "/healthz").status_code == 200


def test_traceparent_is_continued_upstream_and_logged(stack):
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    with stack.client() as c:
        r = post(c, stack, "acme", "trace me", model="fast",
                 headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
        assert r.status_code == 200
        fresh = post(c, stack, "acme", "trace fresh", model="fast")
    seen = [q for q in stack.upstream_requests() if "trace me" in json.dumps(q["body"])][0]
    assert re.fullmatch(rf"00-{trace}-[0-9a-f]{{16}}-01", seen["headers"]["traceparent"])
    assert not seen["headers"]["traceparent"].split("-")[2] == "00f067aa0ba902b7"
    other = [q for q in stack.upstream_requests() if "trace fresh" in json.dumps(q["body"])][0]
    new_trace = other["headers"]["traceparent"].split("-")[1]
    assert re.fullmatch(r"[0-9a-f]{32}", new_trace) and new_trace != trace
    rid = r.headers["x-request-id"]
    assert wait_until(lambda: any(l.get("request_id") == rid and l.get("trace_id") == trace for l in stack.app_log()))
    assert wait_until(lambda: stack.sql("SELECT trace_id FROM executions WHERE request_id = ?", rid) == [(trace,)])
    assert fresh.status_code == 200


def test_join_logs_joins_exactly(stack):
    ids = []
    with stack.client() as c:
        for i in range(3):
            ids.append(post(c, stack, "globex", f"join {i}").headers["x-request-id"])
        bad = c.get("/tenant/globex/v1/models", headers={"Authorization": "Bearer tg_nope_nope_nope"})
        ids.append(bad.headers["x-request-id"])

    def joined():
        out = subprocess.run([str(ROOT / "scripts" / "join-logs"), "--home", str(stack.home), "--tenant", "globex",
                              "--since", "10m"], capture_output=True, text=True, check=True).stdout
        return {row["request_id"]: row for row in map(json.loads, out.splitlines())}

    assert wait_until(lambda: all(i in joined() for i in ids))
    rows = joined()
    for i in ids[:3]:
        assert rows[i]["status"] == 200 and rows[i]["app"]["model"] == "mock-small"
        assert rows[i]["app"]["status"] == 200 and rows[i]["app"]["tokens_out"] > 0
    assert rows[ids[3]]["status"] == 401 and rows[ids[3]]["app"]["status"] == 401
    only_errors = subprocess.run([str(ROOT / "scripts" / "join-logs"), "--home", str(stack.home), "--tenant", "globex",
                                  "--status", "4xx"], capture_output=True, text=True, check=True).stdout
    assert ids[3] in only_errors and ids[0] not in only_errors
    table = subprocess.run([str(ROOT / "scripts" / "join-logs"), "--home", str(stack.home), "--tenant", "globex",
                            "--table"], capture_output=True, text=True, check=True).stdout
    assert table.splitlines()[0].split()[:6] == ["ts", "request_id", "tenant", "status", "outcome", "error"]
    assert ids[0] in table
    # Refusals are not failures: the 401 is counted as refused, and the last line sums each outcome.
    assert rows[ids[3]]["outcome"] == "refused" and rows[ids[0]]["outcome"] == "ok"
    summary = table.splitlines()[-1]
    assert " refused (limits, budgets, policies, bad requests), 0 failed (5xx)" in summary, summary
    # The refused call names its error code; costs are fixed decimals, never in e-notation.
    refused = next(line for line in table.splitlines() if ids[3] in line)
    assert "invalid_api_key" in refused or "missing_api_key" in refused
    assert "e-0" not in table


def test_join_logs_reads_rotated_gzip_files(tmp_path):
    (tmp_path / "log").mkdir()
    access = [{"ts": "2026-01-01T00:00:00+00:00", "request_id": f"r{i}", "tenant": "t", "status": 200,
               "method": "GET", "uri": "/v1/models"} for i in range(3)]
    app = [{"ts": "2026-01-01T00:00:00.000Z", "msg": "request", "request_id": f"r{i}", "tenant": "t",
            "status": 200, "model": "m"} for i in range(3)]
    with gzip.open(tmp_path / "log" / "access.log.2.gz", "wt") as f:
        f.write(json.dumps(access[0]) + "\n")
    (tmp_path / "log" / "access.log.1").write_text(json.dumps(access[1]) + "\n")
    (tmp_path / "log" / "access.log").write_text(json.dumps(access[2]) + "\n")
    with gzip.open(tmp_path / "log" / "tenantgate.log.1.gz", "wt") as f:
        f.write(json.dumps(app[0]) + "\n" + json.dumps(app[1]) + "\n")
    # A worker killed mid-write tore a line: the next line (r2's) follows the fragment and is still read.
    fragment = '{"ts":"2026-01-01T00:00:00.000Z","level":"info","msg":"request","request_id":"r9","mod'
    (tmp_path / "log" / "tenantgate.log").write_text(
        fragment + json.dumps(app[2], separators=(",", ":")) + "\nnot json\n")
    out = subprocess.run([str(ROOT / "scripts" / "join-logs"), "--home", str(tmp_path)], capture_output=True,
                         text=True, check=True).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["request_id"] for r in rows] == ["r0", "r1", "r2"]
    assert all(r["app"]["model"] == "m" for r in rows)


def test_sigusr1_reopens_the_log_without_losing_lines(fresh_stack):
    s = fresh_stack
    ids = []
    with s.client() as c:
        for i in range(10):
            ids.append(post(c, s, "globex", f"before {i}").headers["x-request-id"])
        rotated = s.log_path.with_name("tenantgate.log.1")
        assert wait_until(lambda: all(i in s.log_path.read_text() for i in ids))
        s.log_path.rename(rotated)
        s.pool.send_signal(signal.SIGUSR1)
        for i in range(20):
            ids.append(post(c, s, "globex", f"after {i}").headers["x-request-id"])
            time.sleep(0.02)
    assert wait_until(lambda: s.log_path.exists() and ids[-1] in s.log_path.read_text(), timeout=5)
    both = rotated.read_text() + s.log_path.read_text()
    for rid in ids:
        assert sum(json.loads(line).get("request_id") == rid for line in both.splitlines()) == 1, rid
