"""Starts the real stack for the integration tests: nginx (TLS) → tenantgate pool (FastCGI) → mock upstream."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from fault_upstream import FaultUpstream
from mock_upstream import MockUpstream

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("TG_BIN", str(ROOT / ".build/debug/tenantgate"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=10.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:
            pass
        time.sleep(interval)
    return False


def read_sql(db, query, *args):
    """Rows of a query on a gateway database, opened read-only."""
    import sqlite3
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(query, args).fetchall()
    finally:
        conn.close()


JWT_SECRET = "test-jwt-secret-0123456789abcdef0123456789"

CONFIG = """
jwt: {{algorithm: HS256, secret_env: TG_TEST_JWT_SECRET, tenant_claim: tenant_id, issuer: "https://idp.test", audience: tenantgate-test}}
defaults:
  features: {{streaming: true}}
  limits: {{max_concurrent: 1000}}
backends:
  # The mock stands in for a hosted provider, which fetches image URLs itself.
  up: {{provider: openai, base_url: "http://127.0.0.1:{up}/v1", api_key_env: TG_TEST_UPSTREAM_KEY, timeout_ms: 3000,
        allow_remote_images: true}}
  selfhosted: {{provider: openai, base_url: "http://127.0.0.1:{up}/v1", timeout_ms: 3000}}
  dead: {{provider: openai, base_url: "http://127.0.0.1:{dead}/v1", timeout_ms: 2000}}
  up2: {{provider: openai, base_url: "http://127.0.0.1:{up}/v1", timeout_ms: 3000, max_retries: 0}}
  demo: {{provider: mock}}
  patient: {{provider: openai, base_url: "http://127.0.0.1:{up}/v1", timeout_ms: 60000, first_byte_timeout_ms: 60000, max_retries: 0}}
  claude: {{provider: anthropic, base_url: "http://127.0.0.1:{up}", api_key_env: TG_TEST_ANTHROPIC_KEY, timeout_ms: 3000}}
  upnative: {{provider: openai, base_url: "http://127.0.0.1:{up}/v1", timeout_ms: 3000, responses: native}}
  sluggish: {{provider: openai, base_url: "http://127.0.0.1:{up}/v1", timeout_ms: 8000, first_byte_timeout_ms: 400, max_retries: 0}}
  faulty: {{provider: openai, base_url: "http://127.0.0.1:{fault}/v1", timeout_ms: 1500, first_byte_timeout_ms: 800, max_retries: 0}}
  faultdead: {{provider: openai, base_url: "http://127.0.0.1:{dead}/v1", timeout_ms: 1500, max_retries: 0}}
models:
  fast: {{backend: up, upstream_model: upstream-fast-v2, input_per_mtok: 1, output_per_mtok: 2}}
  local: {{backend: selfhosted, upstream_model: llama-local}}
  backup: {{backend: up2, upstream_model: upstream-backup, input_per_mtok: 2, output_per_mtok: 4}}
  gone: {{backend: dead, upstream_model: whatever}}
  mock-small: {{backend: demo, input_per_mtok: 0.15, output_per_mtok: 0.6}}
  native-fast: {{backend: upnative, upstream_model: upstream-native-v1, input_per_mtok: 1, output_per_mtok: 2}}
  sonnet: {{backend: claude, upstream_model: claude-sonnet-4-5, input_per_mtok: 3, output_per_mtok: 15, cached_input_per_mtok: 0.3, cache_write_per_mtok: 3.75, max_tokens: 64}}
  slowpoke: {{backend: sluggish, upstream_model: slow-model}}
  fault-model: {{backend: faulty, upstream_model: fault-up, input_per_mtok: 1, output_per_mtok: 2, max_tokens: 64}}
  fault-dead: {{backend: faultdead, upstream_model: whatever, input_per_mtok: 1, output_per_mtok: 2, max_tokens: 64}}
  patient-model: {{backend: patient, upstream_model: patient-up, input_per_mtok: 1, output_per_mtok: 2}}
  pricey: {{backend: up, upstream_model: pricey-up, input_per_mtok: 3, output_per_mtok: 15}}
  capped: {{backend: up, upstream_model: capped-up, input_per_mtok: 1, output_per_mtok: 2, max_tokens: 50}}
  capped-new: {{backend: up, upstream_model: capped-new-up, max_tokens: 40, max_tokens_field: max_completion_tokens}}
tenants:
  acme:
    name: Acme
    models: [fast, gone, mock-small]
  globex:
    name: Globex
    models: [mock-small]
  nostream:
    models: [fast]
    features: {{streaming: false, embeddings: false}}
  initech:
    name: Initech
    models: [fast]
    variables: {{product: TPS}}
    system_prompt: "You help {{{{tenant.name}}}} ({{{{tenant.id}}}}) with {{{{product}}}} on {{{{date}}}} for {{{{user}}}} using {{{{model}}}}."
    prompts: {{sales: "Sell {{{{product}}}}."}}
    prompt_mode: locked
    features: {{tools: false, beta: 50}}
  limited:
    models: [fast, mock-small]
    rate_limit: {{requests_per_minute: 10}}
  throttled:
    models: [fast, mock-small]
    rate_limit: {{requests_per_minute: 2}}
  cached:
    models: [fast, sonnet, mock-small]
    cache: {{ttl_s: 60, max_entries: 4}}
  cachedshare:
    models: [fast]
    cache: {{ttl_s: 60, scope: tenant}}
  cached2:
    models: [fast, sonnet, mock-small]
    cache: {{ttl_s: 60, max_entries: 4}}
  audited:
    models: [mock-small]
    rate_limit: {{requests_per_minute: 100000}}
    audit: {{capture_requests: true}}
  cachedguard:
    models: [fast]
    cache: {{ttl_s: 60}}
    policies: [{{name: cards, phase: egress, detector: pii.card, action: redact}}]
  semantic:
    models: [fast, mock-small]
    features: {{semantic_cache: true}}
    cache: {{ttl_s: 60, embedding_model: mock-small, semantic_threshold: 0.9}}
  semantic2:
    models: [fast, mock-small]
    features: {{semantic_cache: true}}
    cache: {{ttl_s: 60, embedding_model: mock-small, semantic_threshold: 0.9}}
  cached-ttl:
    models: [fast]
    cache: {{ttl_s: 1, any_temperature: true}}
  bounded:
    models: [fast, sonnet, local]
    rate_limit: {{requests_per_minute: 100000}}
    policies:
      - preset: secrets-block
      - {{name: cards, phase: egress, detector: pii.card, action: redact}}
      - {{name: codeword, phase: ingress, pattern: "project-[0-9]+", action: log, mode: shadow}}
      - {{name: in-cards, phase: ingress, detector: pii.card, action: redact}}
  guarded:
    models: [fast, sonnet, mock-small]
    rate_limit: {{requests_per_minute: 1000}}
    policies:
      - preset: secrets-block
      - {{name: cards, phase: egress, detector: pii.card, action: redact}}
      - {{name: no-word, phase: ingress, keywords: [forbidden-word], action: block, message: "Not here."}}
      - {{name: mails, phase: egress, detector: pii.email, action: block, mode: shadow}}
      - {{name: injection, phase: ingress, detector: "inject.*", action: log}}
      - {{name: codes, phase: egress, pattern: "ZX-[0-9]{{4}}", action: redact, replacement: "[code]"}}
      - {{name: stop-keys, phase: egress, detector: secret.pem, action: block, message: "Withheld."}}
      - {{name: brief, phase: ingress, keywords: [remind-me], action: inject, message: "Keep it brief."}}
  budgeted:
    models: [fast]
    budget: {{daily_tokens: 300, enforcement: hard}}
  softy:
    models: [fast]
    budget: {{daily_tokens: 5, enforcement: soft}}
  resilient:
    models: [fast, backup]
    fallbacks: {{fast: [backup]}}
    circuit_breaker: {{errors: 3, within_s: 60, cooldown_s: 2}}
  steady:
    models: [fast]
    circuit_breaker: {{errors: 3, within_s: 60, cooldown_s: 2}}
  vault:
    models: [fast]
    upstream_keys: {{up: "sk-tenant-managed-key-999"}}
  byok:
    models: [fast, mock-small]
    fallbacks: {{fast: [mock-small]}}
    auth_passthrough: true
    rate_limit: {{requests_per_minute: 1000}}
  anthro:
    name: Anthro
    models: [sonnet, fast, mock-small, slowpoke]
    features: {{anthropic_beta: true}}
    fallbacks: {{fast: [sonnet]}}
  anthro2:
    models: [sonnet]
    circuit_breaker: {{errors: 2, within_s: 60, cooldown_s: 2}}
  anthro3:
    models: [sonnet, fast]
    system_prompt: "Tenant rules for {{{{tenant.id}}}}."
  nomsg:
    models: [fast]
    features: {{messages_api: false}}
  brute:
    models: [fast, capped, capped-new, mock-small]
    rate_limit: {{requests_per_minute: 100000, tokens_per_minute: 100000000}}
    budget: {{daily_usd: 1000}}
  absurd:
    models: [fast]
    budget: {{daily_usd: 1000, enforcement: soft}}
  bothlimits:
    models: [fast]
    rate_limit: {{requests_per_minute: 1, tokens_per_minute: 100000}}
  tight:
    models: [capped]
    rate_limit: {{tokens_per_minute: 500}}
  leaky:
    models: [fast]
    fallbacks: {{fast: [backup]}}
  greedy:
    models: [patient-model, fast]
    limits: {{max_concurrent: 3}}
  lease-rpm:
    models: [patient-model]
    rate_limit: {{requests_per_minute: 600}}
  lease-budget:
    models: [patient-model]
    budget: {{daily_tokens: 6000, enforcement: hard}}
  lease-kill:
    models: [fast]
    budget: {{daily_tokens: 1000000, enforcement: hard}}
  counted:
    models: [sonnet]
    rate_limit: {{requests_per_minute: 2}}
  splitcount:
    models: [fast]
    rate_limit: {{requests_per_minute: 2}}
  tinybudget:
    models: [pricey]
    budget: {{daily_usd: 0.05}}
  tinyrefuse:
    models: [pricey]
    budget: {{daily_usd: 0.05, when_short: refuse}}
  tinystore:
    models: [fast]
    limits: {{storage_mb: 1}}
  chargedguard:
    models: [fast]
    rate_limit: {{requests_per_minute: 3}}
    policies:
      - preset: secrets-block
      - {{name: no-word, phase: ingress, keywords: [forbidden-word], action: block, message: "Not here."}}
  docs:
    models: [fast, mock-small]
    documents: {{chunk_tokens: 64, overlap_tokens: 8}}
  docsbudget:
    models: [mock-small]
    budget: {{daily_usd: 0.00001, enforcement: hard}}
  docsquota:
    models: [fast]
    documents: {{max_documents: 3, max_collections: 2, max_bytes: 4096}}
  docs2:
    models: [fast, mock-small]
    documents: {{chunk_tokens: 64, overlap_tokens: 8}}
  docsrag:
    models: [fast, sonnet, mock-small]
    system_prompt: "You are the Docsrag assistant."
    retrieval: {{collection: kb, k: 2, max_context_tokens: 400}}
    rate_limit: {{requests_per_minute: 100000}}
    budget: {{daily_usd: 1000}}
  docstight:
    models: [capped]
    retrieval: {{collection: kb, k: 1, max_context_tokens: 2000}}
    rate_limit: {{tokens_per_minute: 300}}
  docsguard:
    models: [fast]
    retrieval: {{collection: kb, k: 3}}
    policies:
      - {{name: no-plans, phase: ingress, keywords: [secret-plan-x], action: block, message: "Not from documents."}}
      - {{name: mails, phase: ingress, detector: pii.email, action: redact}}
  nodocs:
    models: [fast]
    features: {{documents: false}}
  responder:
    models: [fast, sonnet, mock-small, native-fast]
    rate_limit: {{requests_per_minute: 100000}}
    budget: {{daily_usd: 1000}}
  responder2:
    models: [fast, native-fast]
    system_prompt: "Responder2 rules."
  narrow:
    models: [fast]
    rate_limit: {{requests_per_minute: 3}}
  noresp:
    models: [fast]
    features: {{responses_api: false}}
  faulty:
    models: [fault-model, fault-dead]
    budget: {{daily_usd: 1000}}
    circuit_breaker: {{errors: 1000000, within_s: 1, cooldown_s: 1}}
  priced:
    models: [fast, patient-model]
    budget: {{daily_usd: 1000, monthly_usd: 10000}}
    rate_limit: {{requests_per_minute: 1000000, tokens_per_minute: 1000000000}}
"""


PG_URL = os.environ.get("TG_TEST_POSTGRES_URL")


def pg_database():
    """A new, empty database on the test PostgreSQL server (scripts/test starts it); returns its URL."""
    name = "tg_" + os.urandom(6).hex()
    subprocess.run(["psql", PG_URL, "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    return PG_URL.rsplit("/", 1)[0] + "/" + name


def pg_literal(value):
    if value is None:
        return "NULL"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def read_pg(url, query, *args):
    """Rows of a query on a PostgreSQL gateway database (through psql; `?` placeholders as for SQLite)."""
    parts = query.split("?")
    assert len(parts) == len(args) + 1, "one argument per ?"
    text = parts[0] + "".join(pg_literal(a) + rest for a, rest in zip(args, parts[1:]))
    out = subprocess.run(["psql", url, "-AtX", "-F", "\t", "-P", "null=\\N", "-c", text],
                         check=True, capture_output=True, text=True).stdout

    def value(field):
        if field == "\\N":
            return None
        try:
            return int(field)
        except ValueError:
            return field
    return [tuple(value(f) for f in line.split("\t")) for line in out.splitlines()]


class Stack:
    def __init__(self, workers=2, threads=64, spawn_fcgi=False, socket_activation=False, database_url=None,
                 shares=None):
        """`database_url`: run on that PostgreSQL database. `shares`: another stack whose store (and master
        key, configuration and keys) this one shares, as a second host would."""
        self.database_url = database_url or (shares.database_url if shares else None)
        self.shares = shares
        self.spawn_fcgi = spawn_fcgi
        self.socket_activation = socket_activation
        self.listener = None
        self.home = Path(tempfile.mkdtemp(prefix="tg-it-"))
        self.upstream = MockUpstream().start()
        self.faults = FaultUpstream().start()
        self.https_port = free_port()
        self.http_port = free_port()
        self.env = dict(os.environ)
        self.env.update({
            "TENANTGATE_HOME": str(self.home),
            "TENANTGATE_DB": str(self.home / "tenantgate.db"),
            "TENANTGATE_HTTPS_PORT": str(self.https_port),
            "TENANTGATE_HTTP_PORT": str(self.http_port),
            "TENANTGATE_MAX_BODY": "1048576",
            # The tests run a debug build, about 30 times slower at inspection than a release build: its
            # inspection budget is raised to match (test_bounded_work checks the default's mechanism).
            "TENANTGATE_INSPECTION_MS_PER_MIB": "4000",
            "TENANTGATE_INSPECTION_US_PER_CHECK": "2000",
            "TENANTGATE_INSPECTION_BASE_MS": "500",
            "TG_TEST_UPSTREAM_KEY": "sk-upstream-secret-123",
            "TG_TEST_ANTHROPIC_KEY": "sk-ant-upstream-secret-456",
            "TG_TEST_JWT_SECRET": JWT_SECRET,
        })
        if self.database_url:
            self.env["TENANTGATE_DATABASE_URL"] = self.database_url
        if shares:
            shutil.copy(shares.home / "master.key", self.home / "master.key")
        self.workers = workers
        self.threads = threads
        self.base = f"https://127.0.0.1:{self.https_port}"
        self.keys = {}
        self.pool = None

    def cli(self, *args, input=None, check=True):
        return subprocess.run([BIN, *args], env=self.env, input=input, capture_output=True, text=True, check=check)

    def lib(self, command):
        subprocess.run(["bash", "-c", f'source "{ROOT}/scripts/lib.sh"; {command}'], env=self.env, check=True,
                       capture_output=True)

    def start(self):
        self.lib(f'tg_init_home "{self.home}" && tg_render_nginx "{self.home}"')
        config = self.home / "config.yaml"
        config.write_text(CONFIG.format(up=self.upstream.port, dead=free_port(), fault=self.faults.port))
        if self.shares:
            self.keys = self.shares.keys
        else:
            self.cli("config", "import", str(config))
        for tenant in () if self.shares else ("acme", "globex", "nostream", "initech", "limited", "throttled", "guarded", "cached", "cached2", "cached-ttl", "semantic", "semantic2", "cachedguard", "audited", "budgeted", "softy", "priced", "resilient",
                       "steady", "vault", "byok", "bounded", "cachedshare", "tinystore", "splitcount", "tinybudget", "tinyrefuse", "chargedguard", "bothlimits", "anthro", "anthro2", "anthro3", "nomsg", "brute", "absurd", "tight", "leaky", "greedy", "lease-rpm", "lease-budget", "lease-kill",
                       "counted", "docs", "docsbudget", "docstight", "docsquota", "docs2", "docsrag", "docsguard", "nodocs", "responder", "responder2",
                       "narrow", "noresp", "faulty"):
            self.keys[tenant] = self.cli("key", "create", tenant).stdout.strip().splitlines()[-1]
        self.log_path = self.home / "log" / "tenantgate.log"
        if self.spawn_fcgi:
            # The FastCGI convention: spawn-fcgi binds the socket and hands it over as fd 0.
            self.pool = subprocess.Popen(
                ["spawn-fcgi", "-n", "-s", f"{self.home}/run/tenantgate.sock", "--", BIN, "worker", "--threads",
                 str(self.threads), "--log", str(self.log_path)], env=self.env)
        elif self.socket_activation:
            # As systemd does: the socket is made by someone else and handed over as fd 3, with LISTEN_FDS
            # and LISTEN_PID naming the process that gets it (the shell's pid survives its exec).
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(f"{self.home}/run/tenantgate.sock")
            self.listener.listen(1024)
            self.pool = self.activated(["--workers", str(self.workers), "--threads", str(self.threads)])
        else:
            self.pool = subprocess.Popen(
                [BIN, "serve", "--listen", f"unix:{self.home}/run/tenantgate.sock", "--workers", str(self.workers),
                 "--threads", str(self.threads), "--log", str(self.log_path), "--drain-timeout", "10000"],
                env=self.env)
        assert wait_until(lambda: (self.home / "run" / "tenantgate.sock").exists()), "no socket"
        self.lib(f'tg_nginx "{self.home}"')
        assert wait_until(lambda: httpx.get(self.base + "/readyz", verify=False).status_code == 200), "stack not ready"
        return self

    def activated(self, args):
        """`serve` started as systemd starts it: the listener at fd 3, LISTEN_FDS=1, LISTEN_PID its pid."""
        fd = self.listener.fileno()
        return subprocess.Popen(
            ["sh", "-c", 'LISTEN_FDS=1 LISTEN_PID=$$ exec "$@"', "sh", BIN, "serve", "--listen",
             f"unix:{self.home}/run/tenantgate.sock", "--log", str(self.log_path), *args],
            env=self.env, pass_fds=(fd, 3), preexec_fn=lambda: os.dup2(fd, 3))

    def sql(self, query, *args):
        if self.database_url:
            return read_pg(self.database_url, query, *args)
        return read_sql(self.home / "tenantgate.db", query, *args)

    def worker_pids(self):
        out = subprocess.run(["pgrep", "-P", str(self.pool.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self):
        subprocess.run(["bash", "-c", f'source "{ROOT}/scripts/lib.sh"; tg_nginx "{self.home}" -s stop'],
                       env=self.env, capture_output=True)
        if self.pool and self.pool.poll() is None:
            self.pool.send_signal(signal.SIGTERM)
            try:
                self.pool.wait(15)
            except subprocess.TimeoutExpired:
                self.pool.kill()
        self.upstream.stop()
        self.faults.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    def client(self, **kw):
        return httpx.Client(base_url=self.base, verify=False, timeout=30, **kw)

    def upstream_requests(self):
        return self.upstream.recorder.all()

    def app_log(self, torn=None):
        """The app log's records. Every line must parse, unless `torn` (a list) is given: a worker killed with
        SIGKILL mid-write leaves a torn line (fragment + the next line); those lines go into `torn`, and the
        record after the fragment is recovered from its `{"ts":` on, as scripts/join-logs does."""
        if not self.log_path.exists():
            return []
        entries = []
        for line in self.log_path.read_text().splitlines():
            if not line.strip():
                continue
            if torn is None:
                entries.append(json.loads(line))
                continue
            try:
                entries.append(json.loads(line))
            except ValueError:
                torn.append(line)
                start = line.rfind('{"ts":', 1)
                if start > 0:
                    entries.append(json.loads(line[start:]))
        return entries


@pytest.fixture(scope="session")
def stack():
    s = Stack().start()
    yield s
    s.stop()


@pytest.fixture
def spawn_fcgi_stack():
    """A single worker started by spawn-fcgi instead of `tenantgate serve`."""
    s = Stack(threads=4, spawn_fcgi=True).start()
    yield s
    s.stop()


@pytest.fixture
def fresh_stack():
    """A small stack of its own, for tests that signal or kill the pool."""
    s = Stack(workers=2, threads=64).start()
    yield s
    s.stop()


@pytest.fixture
def big_stack():
    """8 workers, for the accounting exactness test."""
    s = Stack(workers=8, threads=16).start()
    yield s
    s.stop()
