"""Every hosting front end started for real and put through the same core checks: Apache mod_fcgid (vhost
and .htaccess), Apache classic CGI, the nginx snippet inside another site, systemd socket activation
(the socket passed as systemd does) and spawn-fcgi (in test_gateway). Each check: a chat answer through
the OpenAI SDK, a stream whose events arrive as the upstream sends them, an auth failure, a bad request,
a body over the limit, the admin login page, operator routes that do not leak under /tenant/<id>/, and
/metrics refused to another address."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import openai
import pytest

from conftest import BIN, ROOT, Stack, free_port, read_sql, wait_until
from mock_upstream import MockUpstream

CONFIG = """
backends:
  up: {{provider: openai, base_url: "http://127.0.0.1:{up}/v1", timeout_ms: 10000}}
models:
  fast: {{backend: up, upstream_model: upstream-fast, input_per_mtok: 1, output_per_mtok: 2}}
tenants:
  acme: {{models: [fast]}}
"""

PACED = '#mock {"chunk_delay_ms": 300, "chunks": 4}'


def lib(command, env=None):
    return subprocess.run(["bash", "-c", f'source "{ROOT}/scripts/lib.sh"; {command}'], env=env, check=True,
                          capture_output=True, text=True)


def core_checks(base, key, sql, outside=True):
    h = {"Authorization": f"Bearer {key}"}
    client = openai.OpenAI(base_url=f"{base}/tenant/acme/v1", api_key=key, max_retries=0,
                           http_client=openai.DefaultHttpxClient(verify=False))
    reply = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hello"}])
    assert reply.choices[0].message.content == "part0 part1 part2 part3 "
    # A stream arrives as the upstream sends it (4 pieces 300 ms apart), not in one piece at the end.
    arrivals = []
    started = time.monotonic()
    with httpx.stream("POST", f"{base}/tenant/acme/v1/chat/completions", headers=h, verify=False, timeout=30,
                      json={"model": "fast", "stream": True,
                            "messages": [{"role": "user", "content": PACED}]}) as s:
        assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
        for line in s.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                arrivals.append(time.monotonic() - started)
    total = time.monotonic() - started
    assert len(arrivals) == 4 and arrivals[0] < total - 0.6, (arrivals, total)
    assert arrivals[-1] - arrivals[0] > 0.6
    # Auth failure, bad request, body over the limit: the gateway's errors in OpenAI's shape.
    r = httpx.post(f"{base}/tenant/acme/v1/chat/completions", verify=False, json={"model": "fast"},
                   headers={"Authorization": "Bearer tg_not_a_key"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = httpx.post(f"{base}/tenant/acme/v1/chat/completions", verify=False, headers=h, content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.post(f"{base}/tenant/acme/v1/chat/completions", verify=False, headers=h, content=b"x" * 1_200_000)
    assert r.status_code == 413
    r = httpx.post(f"{base}/v1/chat/completions", verify=False, headers=h,
                   json={"model": "fast", "messages": [{"role": "user", "content": "bare"}]})
    assert r.status_code == 200 and r.headers["x-tenant-id"] == "acme"
    # The admin login page; operator routes never answer under /tenant/<id>/ or /v1/.
    r = httpx.get(f"{base}/admin/login", verify=False)
    assert r.status_code == 200 and "<form" in r.text
    for path in ("/tenant/acme/admin/login", "/tenant/acme/metrics", "/v1/metrics", "/tenant/acme/healthz"):
        assert httpx.get(f"{base}{path}", verify=False, headers=h).status_code == 404, path
    assert httpx.get(f"{base}/healthz", verify=False).status_code == 200
    # /metrics: this host only.
    r = httpx.get(f"{base}/metrics", verify=False)
    assert r.status_code == 200 and "tenantgate_requests_total" in r.text
    if outside:
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2", verify=False)) as other:
            assert other.get(f"{base}/metrics").status_code == 403
    # Every answered call left its execution row.
    assert wait_until(lambda: sql("SELECT COUNT(*) FROM executions WHERE tenant = 'acme' AND status = 200")[0][0]
                      >= 3)


class ApacheStack:
    """A home made by scripts/install-user, served by a private Apache in one of the hosting modes."""

    def __init__(self, mode):
        self.mode = mode
        self.upstream = MockUpstream().start()
        self.home = Path(tempfile.mkdtemp(prefix="tg-apache-"))
        self.port = free_port()
        self.env = dict(os.environ, TENANTGATE_HOME=str(self.home), TENANTGATE_DB=str(self.home / "tenantgate.db"))
        self.prefix = "" if mode == "fcgid" else "/llm"

    def start(self):
        subprocess.run([str(ROOT / "scripts/install-user"), "--home", str(self.home), "--bin", BIN], env=self.env,
                       check=True, capture_output=True)
        tg = str(self.home / "bin/tenantgate")
        (self.home / "config.yaml").write_text(CONFIG.format(up=self.upstream.port))
        subprocess.run([tg, "config", "import", str(self.home / "config.yaml")], env=self.env, check=True,
                       capture_output=True)
        self.key = subprocess.run([tg, "key", "create", "acme"], env=self.env, check=True, capture_output=True,
                                  text=True).stdout.strip().splitlines()[-1]
        lib(f'tg_render_apache "{self.home}" {self.mode} {self.port} llm && tg_apache "{self.home}" start',
            env=self.env)
        self.base = f"http://127.0.0.1:{self.port}{self.prefix}"
        assert wait_until(lambda: httpx.get(f"{self.base}/healthz").status_code == 200, timeout=20), \
            (self.home / "log/apache-error.log").read_text()
        return self

    def sql(self, query, *args):
        return read_sql(self.home / "tenantgate.db", query, *args)

    def workers(self):
        out = subprocess.run(["pgrep", "-f", f"{self.home}/bin/tenantgate worker"], capture_output=True, text=True)
        return out.stdout.split()

    def stop(self):
        lib(f'tg_apache "{self.home}" stop', env=self.env)
        wait_until(lambda: not self.workers(), timeout=10)
        self.upstream.stop()
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.mark.parametrize("mode", ["fcgid", "htaccess", "cgi"])
def test_apache(mode):
    stack = ApacheStack(mode).start()
    try:
        core_checks(stack.base, stack.key, stack.sql)
        if mode == "cgi":
            # Classic CGI: a process per request, none left once it is answered.
            assert wait_until(lambda: not stack.workers(), timeout=5)
        else:
            # mod_fcgid keeps its worker processes for the next requests.
            assert stack.workers()
        # The wrapper requested directly reaches nothing but the tenant API's 404.
        if mode != "fcgid":
            for path in ("/tenantgate.fcgi", "/tenantgate.fcgi/admin/login", "/tenantgate.fcgi/metrics"):
                assert httpx.get(f"{stack.base}{path}").status_code in (403, 404), path
    finally:
        stack.stop()


def test_nginx_snippet_inside_an_existing_site(stack, tmp_path):
    """The snippet included in another nginx server {} that serves an unrelated static site, under /llm."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<h1>Another site</h1>")
    out = tmp_path / "snippet"
    lib(f'tg_render_snippet "{stack.home}" /llm "{out}"', env=stack.env)
    port = free_port()
    user = "user root root;" if os.geteuid() == 0 else ""
    conf = tmp_path / "nginx.conf"
    (tmp_path / "tmp").mkdir()
    conf.write_text(f"""{user}
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/tmp/body;
    fastcgi_temp_path {tmp_path}/tmp/fastcgi;
    proxy_temp_path {tmp_path}/tmp/proxy;
    server {{
        listen 127.0.0.1:{port};
        root {site};
        location / {{ try_files $uri $uri/ =404; }}
        include {out}/tenantgate-locations.conf;
    }}
}}
""")
    subprocess.run(["nginx", "-p", str(tmp_path), "-c", str(conf), "-e", f"{tmp_path}/error.log"], check=True)
    try:
        base = f"http://127.0.0.1:{port}"
        assert "Another site" in httpx.get(base + "/").text
        r = httpx.post(f"{base}/llm/v1/chat/completions", headers={"Authorization": f"Bearer {stack.keys['acme']}"},
                       json={"model": "fast", "messages": [{"role": "user", "content": "bare"}]})
        assert r.status_code == 200
        snippet_checks(base, stack)
    finally:
        subprocess.run(["nginx", "-p", str(tmp_path), "-c", str(conf), "-s", "stop"], capture_output=True)


def snippet_checks(base, stack):
    # The session stack's tenant acme has the upstream "fast" model: the core checks need only a paced stream.
    h = {"Authorization": f"Bearer {stack.keys['acme']}"}
    client = openai.OpenAI(base_url=f"{base}/llm/tenant/acme/v1", api_key=stack.keys["acme"], max_retries=0)
    assert client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}]).choices
    arrivals, started = [], time.monotonic()
    with httpx.stream("POST", f"{base}/llm/tenant/acme/v1/chat/completions", headers=h, timeout=30,
                      json={"model": "fast", "stream": True, "messages": [{"role": "user", "content": PACED}]}) as s:
        for line in s.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 4 and arrivals[0] < time.monotonic() - started - 0.6
    assert httpx.post(f"{base}/llm/tenant/acme/v1/chat/completions", headers={"Authorization": "Bearer tg_x"},
                      json={}).status_code == 401
    r = httpx.post(f"{base}/llm/tenant/acme/v1/chat/completions", headers=h, content=b"x" * 1_200_000)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    # The admin pages link, post and redirect under the prefix; their stylesheet is served there.
    page = httpx.get(f"{base}/llm/admin/login")
    assert page.status_code == 200 and 'action="/llm/admin/login"' in page.text
    assert 'href="/llm/static/admin.css"' in page.text and '"/admin' not in page.text
    assert httpx.get(f"{base}/llm/static/admin.css").status_code == 200
    r = httpx.get(f"{base}/llm/admin/")
    assert r.status_code in (302, 303) and r.headers["location"].startswith("/llm/admin/login")
    assert httpx.get(f"{base}/llm/admin").headers["location"].endswith("/llm/admin/")
    for path in ("/llm/tenant/acme/admin/login", "/llm/tenant/acme/metrics", "/llm/v1/metrics"):
        assert httpx.get(f"{base}{path}", headers=h).status_code == 404, path
    assert httpx.get(f"{base}/llm/healthz").status_code == 200
    assert httpx.get(f"{base}/llm/metrics").status_code == 200
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as other:
        assert other.get(f"{base}/llm/metrics").status_code == 403
    # Nothing of the gateway outside the prefix.
    assert httpx.get(f"{base}/admin/login").status_code == 404
    assert httpx.get(f"{base}/v1/models", headers=h).status_code == 404


def test_systemd_socket_activation():
    s = Stack(workers=2, threads=16, socket_activation=True).start()
    try:
        core_checks(s.base, s.keys["acme"], s.sql)
        assert any(str(e.get("listen", "")).startswith("systemd socket") for e in s.app_log())
        # Stopping the pool leaves systemd's socket in place; a new pool on the same socket serves at once.
        s.pool.send_signal(signal.SIGTERM)
        s.pool.wait(20)
        assert (s.home / "run/tenantgate.sock").exists()
        s.pool = s.activated(["--workers", "1", "--threads", "8"])
        r = httpx.get(f"{s.base}/v1/models", verify=False, headers={"Authorization": f"Bearer {s.keys['acme']}"},
                      timeout=20)
        assert r.status_code == 200
    finally:
        s.stop()
