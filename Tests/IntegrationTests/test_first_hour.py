"""The operator's first hour, as the README's two commands and the CLI meet it: `scripts/run` keeps one
instance per home and refuses taken ports (a second start cannot break the first), the banner comes
once nginx answers, the instance's CLI is found from any directory, and a CLI pointed at another home
says so."""

import json
import os
import re
import signal
import subprocess
import time

import httpx
import pytest

from conftest import BIN, ROOT, free_port, wait_until


def start_run(home, https_port, http_port):
    env = dict(os.environ, TG_RUN_BIN=BIN, TENANTGATE_HOME=str(home), TENANTGATE_HTTPS_PORT=str(https_port),
               TENANTGATE_HTTP_PORT=str(http_port), TENANTGATE_WORKERS="1", TENANTGATE_THREADS="16")
    env.pop("TENANTGATE_DB", None)
    return subprocess.Popen([str(ROOT / "scripts/run")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd="/")


def run_once(home, https_port, http_port):
    p = start_run(home, https_port, http_port)
    out, err = p.communicate(timeout=60)
    return p.returncode, out, err


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    home = tmp_path_factory.mktemp("first-hour") / "home"
    https_port, http_port = free_port(), free_port()
    p = start_run(home, https_port, http_port)
    banner = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        banner.append(line)
        if line.startswith("Ctrl-C stops everything."):
            break
    text = "".join(banner)
    assert "TenantGate is running." in text, text + p.stderr.read() if p.poll() is not None else text
    yield {"proc": p, "home": home, "https": https_port, "http": http_port, "banner": text}
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)


def chat(instance, key):
    return httpx.post(f"https://127.0.0.1:{instance['https']}/tenant/demo/v1/chat/completions", verify=False,
                      timeout=30, headers={"Authorization": f"Bearer {key}"},
                      json={"model": "demo-small", "messages": [{"role": "user", "content": "Hello!"}]})


def test_the_banner_comes_when_the_instance_answers_and_names_its_cli(instance):
    # Printed only once nginx answered: the health check is up the moment the banner is.
    r = httpx.get(f"https://127.0.0.1:{instance['https']}/healthz", verify=False, timeout=5)
    assert r.status_code == 200
    home = instance["home"]
    assert f"CLI      {home}/bin/tenantgate" in instance["banner"]
    assert f"export TENANTGATE_HOME={home}" in instance["banner"]
    key = (home / "demo.key").read_text().strip()
    assert chat(instance, key).status_code == 200


def test_a_second_scripts_run_cannot_break_the_first(instance, tmp_path):
    # The same home: refused, naming the running instance's pid.
    code, _, err = run_once(instance["home"], free_port(), free_port())
    assert code == 1 and "already running" in err and f"pid {instance['proc'].pid}" in err, err
    # Another home on the same ports: refused before anything starts.
    code, _, err = run_once(tmp_path / "other", instance["https"], free_port())
    assert code == 1 and f"port {instance['https']} is in use" in err, err
    # Before: the second start replaced the socket and, when stopped, left the first answering 503.
    assert (instance["home"] / "run" / "tenantgate.sock").exists()
    key = (instance["home"] / "demo.key").read_text().strip()
    assert chat(instance, key).status_code == 200
    assert instance["proc"].poll() is None


def test_the_instances_cli_works_from_any_directory(instance, tmp_path):
    home = instance["home"]
    # The wrapper scripts/run installed names its home: a key made with it from elsewhere works at once.
    made = subprocess.run([str(home / "bin/tenantgate"), "key", "create", "demo", "--name", "from-elsewhere"],
                          capture_output=True, text=True, cwd=str(tmp_path), env={"PATH": "/usr/bin:/bin"})
    assert made.returncode == 0, made.stderr
    assert f"database: {home}/tenantgate.db" in made.stderr
    assert "warning" not in made.stderr  # a live gateway uses this database
    key = made.stdout.strip().splitlines()[-1]
    assert wait_until(lambda: chat(instance, key).status_code == 200, timeout=5)
    # Pointed at another home (one that exists, with no gateway), a write says so.
    other = tmp_path / "elsewhere"
    other.mkdir()
    wrong = subprocess.run([BIN, "tenant", "create", "stray"], capture_output=True, text=True, cwd=str(tmp_path),
                           env={"PATH": "/usr/bin:/bin", "TENANTGATE_HOME": str(other)})
    assert wrong.returncode == 0, wrong.stderr
    assert f"database: {other}/tenantgate.db" in wrong.stderr
    assert "warning: no running gateway uses this database" in wrong.stderr
    # A home that does not exist is an error that says what to do (not a SQLite error code).
    missing = subprocess.run([BIN, "tenant", "list"], capture_output=True, text=True, cwd=str(tmp_path),
                             env={"PATH": "/usr/bin:/bin", "TENANTGATE_HOME": str(tmp_path / "nowhere")})
    assert missing.returncode == 1 and "no TenantGate home at" in missing.stderr


def test_the_cli_records_its_user_even_without_user_set(instance, tmp_path):
    home = instance["home"]
    subprocess.run([str(home / "bin/tenantgate"), "tenant", "set", "demo", "name", "Demo Co"], check=True,
                   capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    import sqlite3
    conn = sqlite3.connect(f"file:{home}/tenantgate.db?mode=ro", uri=True, timeout=10)
    users = [u for (u,) in conn.execute("SELECT user FROM admin_audit ORDER BY id DESC LIMIT 1")]
    conn.close()
    import pwd
    assert users == [f"cli:{pwd.getpwuid(os.getuid()).pw_name}"]


def test_the_tours_example_tenant_imports_and_serves(instance):
    """docs/examples/tenant.yaml, as the README's tour uses it with the instance's CLI: imports, serves,
    and carries its budget, prompt and policies."""
    cli = str(instance["home"] / "bin/tenantgate")
    out = subprocess.run([cli, "config", "import", str(ROOT / "docs/examples/tenant.yaml")], capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0 and "configuration imported" in out.stdout, out.stderr
    made = subprocess.run([cli, "key", "create", "acme", "--name", "tour"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, check=True)
    key = made.stdout.strip().splitlines()[-1]

    def served():
        r = httpx.post(f"https://127.0.0.1:{instance['https']}/tenant/acme/v1/chat/completions", verify=False,
                       timeout=30, headers={"Authorization": f"Bearer {key}"},
                       json={"model": "demo-small", "messages": [{"role": "user", "content": "Hi"}]})
        return r.status_code == 200
    assert wait_until(served, timeout=5)
    shown = subprocess.run([cli, "tenant", "show", "acme", "--json"], capture_output=True, text=True,
                           env={"PATH": "/usr/bin:/bin"}, check=True).stdout
    assert '"when_short":"fit"' in shown.replace(" ", "") and "Roadrunner Trap" in shown
    assert "secrets-block" in shown


def test_zz_when_nginx_exits_the_instance_ends(instance):
    p = instance["proc"]
    subprocess.run(["pkill", "-f", f"nginx -p {instance['home']}/run"], check=False)
    p.wait(timeout=30)
    assert p.returncode == 1
    assert "nginx exited" in p.stderr.read()
    assert not (instance["home"] / "run" / "run.pid").exists()


def test_the_cli_speaks_one_language(stack):
    """One error style and documented exit codes; the tenant named the same way everywhere; --json on
    the commands that print; times in ISO 8601."""
    def cli(*args):
        return stack.cli(*args, check=False)
    # A usage error: exit 2, `error: …` (before: exit 64 and "Error:").
    bad = cli("usage", "--by", "colour")
    assert bad.returncode == 2 and bad.stderr.startswith("error: "), (bad.returncode, bad.stderr)
    # Not found: exit 3, for every command that takes a tenant.
    for args in (["usage", "nosuch"], ["key", "list", "--tenant", "nosuch"], ["cache", "stats", "nosuch"],
                 ["audit", "verify", "nosuch"], ["key", "create", "nosuch"], ["policy", "check", "nosuch", "-"]):
        out = cli(*args)
        assert out.returncode == 3 and out.stderr.startswith("error: unknown tenant 'nosuch'"), (args, out.stderr)
    # Positional or --tenant, the same; both naming different tenants is a usage error.
    assert cli("key", "list", "acme", "--json").stdout == cli("key", "list", "--tenant", "acme", "--json").stdout
    assert cli("usage", "acme", "--tenant", "globex").returncode == 2
    # --json where something is printed, times in ISO 8601.
    made = json.loads(cli("key", "create", "--tenant", "acme", "--name", "json-key", "--json").stdout)
    assert made["tenant"] == "acme" and made["key"].startswith("tg_") and made["id"].startswith("key_")
    listed = json.loads(cli("key", "list", "acme", "--json").stdout)
    mine = next(k for k in listed if k["id"] == made["id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", mine["created_at"])
    verified = json.loads(cli("audit", "verify", "acme", "--json").stdout)
    assert verified["ok"] is True and verified["chains"] == 1
    assert json.loads(cli("tenant", "create", "clitenant", "--models", "fast", "--json").stdout)["created"] is True
    assert json.loads(cli("tenant", "set", "clitenant", "name", "C", "--json").stdout)["updated"] == "name"
    assert json.loads(cli("tenant", "delete", "clitenant", "--json").stdout)["deleted"] is True
    exported = cli("audit", "export", "acme", "--since", "2026-01-01").stdout.splitlines()
    assert len(exported) > 1 and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", json.loads(exported[1])["ts"])
    assert cli("audit", "export", "acme", "--since", "yesterday").returncode == 1
    recent = cli("audit", "export", "acme", "--since", "10m").stdout.splitlines()
    assert 1 < len(recent) <= len(exported)
    assert len(cli("audit", "export", "acme", "--since", "2099-01-01").stdout.splitlines()) == 1  # header only
    assert cli("audit", "export", "acme", "--since", "2026-02-31").returncode == 1
    assert cli("usage", "_system").returncode == 2  # only the audit commands know the deployment's chain
    assert cli("audit", "verify", "_system").returncode == 0
    for args in (["--version"], ["usage", "--help"]):
        assert cli(*args).returncode == 0
    # The commands that change something answer --json too.
    migrated = json.loads(cli("migrate", "--json").stdout)
    assert migrated["applied"] == 0 and migrated["schema_version"] >= 16
    pruned = json.loads(cli("prune", "--json").stdout)
    assert set(pruned) == {"execution_rows", "audit_events", "stored_responses"}
    revoked = json.loads(cli("key", "revoke", made["id"], "--json").stdout)
    assert revoked == {"id": made["id"], "tenant": "acme", "revoked": True}
    # policy check exits non-zero when the text would be blocked (before: 0 either way).
    blocked = subprocess.run([BIN, "policy", "check", "guarded", "-", "--phase", "ingress"], input="a forbidden-word",
                             capture_output=True, text=True, env=stack.env)
    assert blocked.returncode == 1 and json.loads(blocked.stdout)["blocked_by"] == "no-word"
    fine = subprocess.run([BIN, "policy", "check", "--tenant", "guarded", "--phase", "ingress"], input="hello",
                          capture_output=True, text=True, env=stack.env)
    assert fine.returncode == 0, fine.stderr
    # `--name` meant three things (a key's name, a tenant's display name, a template): templates are
    # `--template` now (`--name` still works).
    assert cli("prompt", "history", "initech", "--template", "sales", "--json").stdout == cli(
        "prompt", "history", "initech", "--name", "sales", "--json").stdout
    history = cli("prompt", "history", "--tenant", "initech", "--json")
    assert history.returncode == 0 and json.loads(history.stdout) == json.loads(
        cli("prompt", "history", "initech", "--json").stdout)
