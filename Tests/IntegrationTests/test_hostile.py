"""A hostile tenant, client or upstream against the shared pool, through nginx.

Every test ends by checking that no worker died (same worker pids, no `worker_died` in the supervisor's log)
and that another tenant is still served at once.
"""

import json

import httpx
import pytest

from conftest import wait_until

INT64_MAX = 9223372036854775807


@pytest.fixture(scope="module")
def pool(stack):
    return {"pids": sorted(stack.worker_pids())}


@pytest.fixture
def h(stack, pool):
    """The stack; afterwards: no worker died and another tenant's call still succeeds."""
    yield stack
    assert sorted(stack.worker_pids()) == pool["pids"], "a worker was replaced"
    assert not [e for e in stack.app_log() if e.get("msg") == "worker_died"]
    with stack.client() as c:
        r = c.post("/tenant/globex/v1/chat/completions", headers=auth(stack, "globex"),
                   json={"model": "mock-small", "messages": [{"role": "user", "content": "still there?"}]})
    assert r.status_code == 200, r.text


def auth(stack, tenant):
    return {"Authorization": f"Bearer {stack.keys[tenant]}"}


def chat(stack, tenant, body, headers=None, raw=None):
    with stack.client() as c:
        if raw is not None:
            return c.post(f"/tenant/{tenant}/v1/chat/completions", content=raw,
                          headers={**auth(stack, tenant), "Content-Type": "application/json", **(headers or {})})
        return c.post(f"/tenant/{tenant}/v1/chat/completions", json=body, headers={**auth(stack, tenant),
                                                                                    **(headers or {})})


def messages(stack, tenant, body, headers=None, path="/v1/messages"):
    with stack.client() as c:
        return c.post(f"/tenant/{tenant}{path}", json=body,
                      headers={"x-api-key": stack.keys[tenant], "anthropic-version": "2023-06-01", **(headers or {})})


def upstream(stack, marker):
    return [q for q in stack.upstream_requests() if marker in json.dumps(q["body"])]


def user_msg(text):
    return [{"role": "user", "content": text}]


# Arithmetic that cannot trap.

@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", [INT64_MAX, 2 ** 63, 10 ** 30, 1_048_577])
def test_absurd_max_tokens_is_400_naming_the_field(h, field, value):
    r = chat(h, "brute", None, raw=f'{{"model":"fast","{field}":{value},"messages":[{{"role":"user",'
                                      f'"content":"huge-{field}"}}]}}'.encode())
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == field
    assert upstream(h, f"huge-{field}") == []


def test_absurd_max_tokens_on_the_messages_api_is_400(h):
    r = messages(h, "anthro", {"model": "fast", "max_tokens": INT64_MAX, "messages": user_msg("huge-msg")})
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"
    r = messages(h, "anthro", {"model": "sonnet", "max_tokens": 65, "messages": user_msg("over-cap")})
    assert r.status_code == 400 and "64" in r.json()["error"]["message"]


@pytest.mark.parametrize("retry_after", ["-9223372036854775808", "9223372036854775807", "99999999999999999999999",
                                         "-1", "1e9", "Wed, 21 Oct 2015 07:28:00 GMT", ""])
def test_hostile_retry_after_from_the_upstream(h, retry_after):
    marker = f"ra-{len(retry_after)}-{retry_after}-end"
    r = chat(h, "brute", {"model": "fast", "messages": user_msg(
        f'{marker} #mock {{"status": 429, "retry_after": "{retry_after}"}}')})
    assert r.status_code in (429, 502), r.text
    assert 1 <= len(upstream(h, marker)) <= 3


@pytest.mark.parametrize("usage", [
    {"prompt_tokens": INT64_MAX, "completion_tokens": INT64_MAX, "total_tokens": INT64_MAX},
    {"prompt_tokens": -5, "completion_tokens": -INT64_MAX - 1},
    {"prompt_tokens": 10, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": INT64_MAX}},
])
@pytest.mark.parametrize("stream", [False, True])
def test_hostile_usage_report_from_the_upstream(h, usage, stream):
    marker = f"usage-{json.dumps(usage)}-{stream}"
    body = {"model": "fast", "stream": stream, "messages": user_msg(f"{marker} #mock {json.dumps({'usage': usage})}")}
    with h.client() as c:
        r = c.post("/tenant/absurd/v1/chat/completions", json=body, headers=auth(h, "absurd"))
        assert r.status_code == 200, r.text
    rid = r.headers["x-request-id"]
    assert wait_until(lambda: h.sql("SELECT tokens_in, tokens_out, cost_nano FROM executions WHERE request_id = ?",
                                    rid) != [])
    [(tokens_in, tokens_out, cost)] = h.sql(
        "SELECT tokens_in, tokens_out, cost_nano FROM executions WHERE request_id = ?", rid)
    assert 0 <= tokens_in <= 2 ** 40 and 0 <= tokens_out <= 2 ** 40 and 0 <= cost <= INT64_MAX


# Routing that matches nginx's gates.

@pytest.mark.parametrize("path", [
    "/tenant/acme/metrics", "/tenant/acme/healthz", "/tenant/acme/readyz", "/tenant/acme/admin/",
    "/tenant/acme/admin/login", "/tenant/x/admin", "/v1/metrics", "/v1/admin/login", "/v1/healthz",
    "/tenant/acme/v1/../metrics", "/tenant/acme/%2e%2e/metrics",
])
def test_operator_endpoints_never_answer_under_tenant_or_api_paths(h, path):
    with h.client() as c:
        for method in ("GET", "POST"):
            r = c.request(method, path, headers=auth(h, "acme"), data={"user": "admin", "password": "x" * 12})
            assert r.status_code in (400, 404), (method, path, r.status_code)
            assert "tenantgate_requests_total" not in r.text and "<form" not in r.text


def test_operator_endpoints_still_answer_on_their_own_locations(h):
    with h.client() as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
        assert "tenantgate_requests_total" in c.get("/metrics").text
        assert c.get("/admin/login").status_code == 200
        r = c.get("/tenant/acme/v1/models", headers=auth(h, "acme"))
        assert r.status_code == 200
        assert r.headers["strict-transport-security"].startswith("max-age=")


# The guarantee, whole: the reserved cap is what the upstream is told.

def test_the_catalog_cap_is_sent_upstream(h):
    assert chat(h, "brute", {"model": "capped", "messages": user_msg("cap-none")}).status_code == 200
    assert upstream(h, "cap-none")[0]["body"]["max_tokens"] == 50
    assert chat(h, "brute", {"model": "capped", "max_tokens": 20, "messages": user_msg("cap-20")}).status_code == 200
    assert upstream(h, "cap-20")[0]["body"]["max_tokens"] == 20
    r = chat(h, "brute", {"model": "capped", "max_tokens": 51, "messages": user_msg("cap-51")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens" and upstream(h, "cap-51") == []
    # The catalog names the field the upstream wants when the client gives none.
    assert chat(h, "brute", {"model": "capped-new", "messages": user_msg("cap-new")}).status_code == 200
    sent = upstream(h, "cap-new")[0]["body"]
    assert sent["max_completion_tokens"] == 40 and "max_tokens" not in sent
    # Without a catalog cap, the default cap that was reserved is sent.
    assert chat(h, "brute", {"model": "fast", "messages": user_msg("cap-default")}).status_code == 200
    assert upstream(h, "cap-default")[0]["body"]["max_tokens"] == 4096
    # Two caps that disagree are refused.
    r = chat(h, "brute", {"model": "fast", "max_tokens": 5, "max_completion_tokens": 6, "messages": user_msg("x")})
    assert r.status_code == 400


def test_n_completions_are_reserved_n_times(h):
    # tokens_per_minute 500, cap 50 per completion: n=6 needs 300 + prompt, n=11 needs 550 + prompt.
    ok = chat(h, "tight", {"model": "capped", "n": 6, "messages": user_msg("n-6")})
    assert ok.status_code == 200, ok.text
    r = chat(h, "tight", {"model": "capped", "n": 11, "messages": user_msg("n-11")})
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
    assert upstream(h, "n-11") == []
    for n in (0, -1, 129, 1.5, "2"):
        r = chat(h, "brute", {"model": "fast", "n": n, "messages": user_msg("n-bad")})
        assert r.status_code == 400 and r.json()["error"]["param"] == "n", n


def test_images_and_tools_count_in_the_reservation(h):
    image = {"type": "image_url", "image_url": {"url": "https://example.invalid/cat.png"}}
    # The same request without the image or the tools fits the tenant's window (so a 429 below is theirs).
    control = chat(h, "tight", {"model": "capped", "max_tokens": 1, "messages": user_msg("img")})
    assert control.status_code == 200, control.text
    # 500 tokens per minute: one image (2,500 tokens reserved) cannot fit.
    r = chat(h, "tight", {"model": "capped", "max_tokens": 1, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "img"}, image]}]})
    assert r.status_code == 429
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                                                                           "description": "x" * 600}}}]
    r = chat(h, "tight", {"model": "capped", "max_tokens": 1, "tools": tools, "messages": user_msg("tools")})
    assert r.status_code == 429


# Bounded input everywhere.

@pytest.mark.parametrize("user", ["u" * 257, "a\nb", "tab\there", "\u0085", "", 5])
def test_user_field_is_bounded(h, user):
    r = chat(h, "brute", {"model": "mock-small", "user": user, "messages": user_msg("user-field")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "user", r.text
    r = messages(h, "anthro", {"model": "mock-small", "max_tokens": 5, "metadata": {"user_id": user},
                               "messages": user_msg("user-id")})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_tenant_info_user_is_bounded(h):
    with h.client() as c:
        r = c.get("/tenant/acme/v1/tenant-info", params={"user": "x" * 300}, headers=auth(h, "acme"))
        assert r.status_code == 400
        r = c.get("/tenant/acme/v1/tenant-info", params={"user": "ok-user"}, headers=auth(h, "acme"))
        assert r.status_code == 200


@pytest.mark.parametrize("raw", [
    b'{"model":"fast","model":"mock-small","messages":[{"role":"user","content":"dup"}]}',
    b'{"model":"fast","messages":[{"role":"user","content":"dup","content":"other"}]}',
    b'{"model":"fast","stream":false,"stream":true,"messages":[{"role":"user","content":"dup"}]}',
])
def test_duplicate_keys_are_invalid_json(h, raw):
    r = chat(h, "brute", None, raw=raw)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text
    assert "duplicate key" in r.json()["error"]["message"]
    assert upstream(h, "dup") == []


def test_traceparent_with_non_ascii_is_replaced(h):
    fullwidth = "00-" + "\uff10" * 32 + "-" + "\uff11" * 16 + "-01"
    r = chat(h, "brute", {"model": "fast", "messages": user_msg("trace-fw")},
             headers={"traceparent": fullwidth.encode()})
    assert r.status_code == 200
    [up] = upstream(h, "trace-fw")
    sent = up["headers"]["traceparent"]
    assert sent.isascii() and len(sent) == 55 and "\uff10" not in sent
    good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert chat(h, "brute", {"model": "fast", "messages": user_msg("trace-ok")},
                headers={"traceparent": good}).status_code == 200
    assert upstream(h, "trace-ok")[0]["headers"]["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")


# Anthropic-native passthrough forwards only what the gates checked.

def test_unknown_top_level_fields_are_refused(h):
    for field, value in (("mcp_servers", [{"type": "url", "url": "https://evil.invalid", "name": "x"}]),
                         ("container", "c-1"), ("context_management", {})):
        r = messages(h, "anthro", {"model": "sonnet", "max_tokens": 5, field: value, "messages": user_msg("mcp")})
        assert r.status_code == 400 and r.json()["error"]["message"].startswith(field), r.text
    r = messages(h, "anthro", {"model": "sonnet", "max_tokens": 5, "metadata": {"secret_route": "x"},
                               "messages": user_msg("mcp")})
    assert r.status_code == 400
    assert upstream(h, "mcp") == []


def test_server_tools_documents_and_betas_need_their_flags(h):
    web = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
    r = messages(h, "anthro", {"model": "sonnet", "max_tokens": 5, "tools": [web], "messages": user_msg("srv")})
    assert r.status_code == 403 and r.json()["error"]["code"] == "feature_disabled"
    assert "server_tools" in r.json()["error"]["message"]
    r = messages(h, "anthro3", {"model": "sonnet", "max_tokens": 5, "messages": user_msg("beta")},
                 headers={"anthropic-beta": "mcp-client-2025-04-04"})
    assert r.status_code == 403 and "anthropic_beta" in r.json()["error"]["message"]
    doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "memo"}}
    h.cli("tenant", "set", "anthro3", "features.documents", "false")
    try:
        def refused():
            refused.n += 1
            r = messages(h, "anthro3", {"model": "sonnet", "max_tokens": 5, "messages": [
                {"role": "user", "content": [doc, {"type": "text", "text": f"docs-{refused.n}-end"}]}]})
            return r.status_code == 403 and "documents" in r.json()["error"]["message"]
        refused.n = 0
        assert wait_until(refused, timeout=3)  # once the change has reached the worker
        assert upstream(h, f"docs-{refused.n}-end") == []
    finally:
        h.cli("tenant", "set", "anthro3", "features.documents", "true")
    assert upstream(h, "srv") == [] and upstream(h, "beta") == []


def test_count_tokens_upstream_calls_are_rate_limited(h):
    statuses = [messages(h, "counted", {"model": "sonnet", "messages": user_msg(f"ctl-{i}-end")},
                         path="/v1/messages/count_tokens").status_code for i in range(3)]
    assert statuses == [200, 200, 429]
    assert len(upstream(h, "ctl-")) == 2


# Fallbacks, global spend.

def test_fallbacks_outside_the_allow_list_are_never_used(h):
    r = chat(h, "leaky", {"model": "fast", "messages": user_msg('leak #mock {"status": 500}')})
    assert r.status_code == 502
    assert {q["body"]["model"] for q in upstream(h, "leak")} == {"upstream-fast-v2"}


def test_byok_key_never_goes_to_a_fallback_on_another_backend(h):
    r = chat(h, "byok", {"model": "fast", "messages": user_msg('byok-fb #mock {"status": 500}')},
             headers={"X-Provider-Key": "sk-client-fallback-1"})
    assert r.status_code == 502  # mock-small (another backend) would have served it with the client's key
    assert all(q["headers"].get("authorization") == "Bearer sk-client-fallback-1" for q in upstream(h, "byok-fb"))


def test_tenant_info_does_not_show_global_spend(h):
    with h.client() as c:
        info = c.get("/tenant/priced/v1/tenant-info", headers=auth(h, "priced")).json()
    assert not [k for k in info["limits"] if k.startswith("global")]


def test_upstream_headers_are_printable_ascii(h):
    assert chat(h, "brute", {"model": "fast", "messages": user_msg("hdr-ascii")},
                headers={"anthropic-version": "2023-06-01\u00e9".encode()}).status_code == 200
    [up] = upstream(h, "hdr-ascii")
    assert all(v.isascii() for v in up["headers"].values())


def test_fastcgi_over_tcp_accepts_only_allowed_peers(stack, tmp_path):
    """`serve --listen HOST:PORT` trusts only --allow-from (default loopback) to set TG_TENANT and friends."""
    import socket
    import subprocess

    from conftest import BIN, free_port

    def fcgi_get(port):
        def record(kind, content):
            return bytes([1, kind, 0, 1, len(content) >> 8, len(content) & 255, 0, 0]) + content
        params = b""
        for k, v in ((b"REQUEST_METHOD", b"GET"), (b"TG_ROUTE", b"healthz"), (b"TG_PATH", b"/healthz")):
            params += bytes([len(k), len(v)]) + k + v
        data = record(1, bytes([0, 1, 0, 0, 0, 0, 0, 0])) + record(4, params) + record(4, b"") + record(5, b"")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(data)
            out = b""
            try:
                while chunk := s.recv(65536):
                    out += chunk
            except (ConnectionResetError, socket.timeout):
                pass
            return out

    for allow, served in (("127.0.0.1", True), ("10.9.8.7", False)):
        port = free_port()
        pool = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{port}", "--workers", "1", "--threads", "2",
                                 "--allow-from", allow, "--log", str(tmp_path / f"{allow}.log")], env=stack.env)
        try:
            def up():
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            assert wait_until(up, timeout=10)
            wait_until(lambda: (tmp_path / f"{allow}.log").exists() and "worker_start" in
                       (tmp_path / f"{allow}.log").read_text(), timeout=10)
            out = fcgi_get(port)
            assert (b"Status: 200" in out) == served, (allow, out[:200])
        finally:
            pool.terminate()
            pool.wait(15)


@pytest.mark.parametrize("field,value", [("tools", "x"), ("tools", -1), ("tools", [1, 2]), ("functions", "x"),
                                         ("functions", [None]), ("tool_choice", 3), ("function_call", [1])])
def test_tools_of_the_wrong_type_are_refused_before_any_upstream(stack, field, value):
    before = len(stack.upstream_requests())
    r = httpx.post(f"{stack.base}/tenant/initech/v1/chat/completions", verify=False, timeout=10,
                   headers={"Authorization": f"Bearer {stack.keys['initech']}"},
                   json={"model": "fast", field: value, "messages": [{"role": "user", "content": "hi"}]})
    # Before: forwarded upstream past initech's `tools: false` flag (the flag looks for a non-empty list).
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == field
    assert len(stack.upstream_requests()) == before
