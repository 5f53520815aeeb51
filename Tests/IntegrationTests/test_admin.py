"""The admin page over HTTPS through nginx: login, sessions, CSRF, escaping, changes reaching the API."""

import html
import re
import time

import httpx
import pytest

from conftest import Stack, wait_until

PASSWORD = "correct horse battery staple"
HOSTILE_NAME = """<script>alert("name")</script>' onmouseover="x" """
HOSTILE_PROMPT = """</textarea><script>alert('prompt')</script>"; DROP TABLE tenants; --"""


@pytest.fixture(scope="module")
def admin_stack():
    s = Stack().start()
    s.cli("admin", "password", "--user", "root", input=PASSWORD + "\n")
    s.cli("admin", "password", "--user", "victim", input=PASSWORD + "\n")
    s.cli("admin", "password", "--user", "other", input=PASSWORD + "\n")
    yield s
    s.stop()


class Browser:
    """A cookie-keeping HTTPS client that behaves like a same-origin browser form."""

    def __init__(self, stack, address=None):
        self.stack = stack
        # A loopback source address of its own (127.0.0.x) makes nginx see a different client address.
        transport = httpx.HTTPTransport(verify=False, local_address=address) if address else None
        self.client = httpx.Client(base_url=stack.base, verify=False, timeout=30, follow_redirects=False,
                                   transport=transport)
        self.origin = stack.base

    def get(self, path, **kw):
        return self.client.get(path, **kw)

    def post(self, path, data, origin=True, csrf=True, **kw):
        headers = {"Origin": self.origin} if origin else {}
        if csrf is True:
            data = {**data, "_csrf": self.csrf()}
        elif csrf:
            data = {**data, "_csrf": csrf}
        return self.client.post(path, data=data, headers=headers, **kw)

    def csrf(self):
        page = self.get("/admin/").text
        match = re.search(r'name="_csrf" value="([0-9a-f]{64})"', page)
        assert match, page[:500]
        return match.group(1)

    def once(self, tenant):
        """The key form's single-use token, as the tenant page gives it."""
        page = self.get(f"/admin/tenants/{tenant}").text
        return re.search(r'name="_once" value="([0-9a-f]{32})"', page).group(1)

    def login(self, user="root", password=PASSWORD):
        return self.client.post("/admin/login", data={"user": user, "password": password},
                                headers={"Origin": self.origin})


@pytest.fixture()
def browser(admin_stack):
    b = Browser(admin_stack)
    r = b.login()
    assert r.status_code == 303, r.text
    return b


def chat(stack, tenant, content="hello", model="fast"):
    return httpx.post(f"{stack.base}/tenant/{tenant}/v1/chat/completions", verify=False, timeout=30,
                      headers={"Authorization": f"Bearer {stack.keys[tenant]}"},
                      json={"model": model, "messages": [{"role": "user", "content": content}]})


def tenant_form(b, tenant):
    """The tenant form's current values, as a browser would submit them unchanged."""
    page = b.get(f"/admin/tenants/{tenant}").text
    form = page.split('class="settings"', 1)[1].split("</form>", 1)[0]
    data = {}
    for name, value in re.findall(r'<input type="(?:text|password)" id="[^"]*" name="([^"]+)" value="([^"]*)"', form):
        data[html.unescape(name)] = html.unescape(value)
    for name, value in re.findall(r'<textarea id="[^"]*" name="([^"]+)"[^>]*>(.*?)</textarea>', form, re.S):
        data[html.unescape(name)] = html.unescape(value)
    for name, options in re.findall(r'<select id="[^"]*" name="([^"]+)">(.*?)</select>', form, re.S):
        selected = re.search(r'<option value="([^"]*)" selected>', options)
        data[name] = html.unescape(selected.group(1)) if selected else ""
    if 'name="auth_passthrough" checked' in form:
        data["auth_passthrough"] = "on"
    return data


def test_the_tenant_page_shows_collections_documents_and_a_search_box(admin_stack, browser):
    s = admin_stack
    h = {"Authorization": f"Bearer {s.keys['docs']}"}
    base = f"{s.base}/tenant/docs/v1/collections"
    assert httpx.post(base, json={"name": "handbook"}, headers=h, verify=False).status_code == 201
    doc = httpx.post(f"{base}/handbook/documents", headers=h, verify=False,
                     json={"text": "Holiday policy: twenty days of leave a year.", "source": "<script>x</script>.md"}
                     ).json()
    page = browser.get("/admin/tenants/docs").text
    assert "handbook" in page and doc["id"] in page
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;.md" in page
    found = browser.get("/admin/tenants/docs", params={"collection": "handbook", "q": "holiday leave"}).text
    assert f"{doc['id']}#0" in found and "twenty days" in found
    hostile = browser.get("/admin/tenants/docs", params={"collection": "handbook", "q": '"><img src=x>'}).text
    assert '"><img src=x>' not in hostile and "No match." in hostile
    # Another tenant's page shows none of it.
    assert "handbook" not in browser.get("/admin/tenants/docs2").text


def test_pages_need_a_login(admin_stack):
    with httpx.Client(base_url=admin_stack.base, verify=False) as c:
        r = c.get("/admin/")
        assert r.status_code == 303 and r.headers["location"] == "/admin/login"
        r = c.get("/admin/login")
        assert r.status_code == 200 and "<form" in r.text
        for header, value in [("content-security-policy", "default-src 'self'"), ("x-frame-options", "DENY"),
                              ("cache-control", "no-store"), ("referrer-policy", "same-origin")]:
            assert value in r.headers[header]
        assert c.get("/admin").status_code == 301
        assert c.get("/static/admin.css").status_code == 200


def test_login_sets_a_strict_session_cookie_and_logout_ends_it(admin_stack):
    b = Browser(admin_stack)
    r = b.login()
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    for part in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/admin"]:
        assert part in cookie
    value = re.search(r"tg_admin=([0-9a-f]{64})", cookie).group(1)
    assert b.get("/admin/").status_code == 200
    assert b.post("/admin/logout", {}).status_code == 303
    # The old cookie no longer works, even if a client keeps sending it.
    with httpx.Client(base_url=admin_stack.base, verify=False, cookies={"tg_admin": value}) as c:
        assert c.get("/admin/").status_code == 303
    stored = admin_stack.sql("SELECT COUNT(*) FROM admin_sessions WHERE user = 'root' AND hex(id_hash) = ?",
                             value.upper())
    assert stored[0][0] == 0


def test_wrong_password_and_unknown_user_are_refused_alike(admin_stack):
    b = Browser(admin_stack)
    r1 = b.login(password="wrong password!")
    r2 = b.login(user="nobody-here")
    assert r1.status_code == r2.status_code == 401
    assert "Wrong user or password" in r1.text and "Wrong user or password" in r2.text
    assert "set-cookie" not in r1.headers


def test_session_expiry_is_enforced(admin_stack, browser):
    assert browser.get("/admin/").status_code == 200
    # Idle for more than 30 minutes: the session is refused and deleted.
    import sqlite3
    conn = sqlite3.connect(admin_stack.home / "tenantgate.db", timeout=10)
    conn.execute("UPDATE admin_sessions SET seen_ms = seen_ms - 31 * 60000")
    conn.commit()
    conn.close()
    assert browser.get("/admin/").status_code == 303
    r = browser.client.post("/admin/tenants/acme", data={"name": "x"}, headers={"Origin": browser.origin})
    assert r.status_code == 401
    # Active all along but logged in more than 12 hours ago: refused too.
    fresh = Browser(admin_stack)
    assert fresh.login().status_code == 303
    conn = sqlite3.connect(admin_stack.home / "tenantgate.db", timeout=10)
    conn.execute("UPDATE admin_sessions SET created_ms = created_ms - 13 * 3600000")
    conn.commit()
    conn.close()
    assert fresh.get("/admin/").status_code == 303


def test_changing_the_system_prompt_reaches_the_next_api_request(admin_stack, browser):
    data = tenant_form(browser, "acme")
    data["system_prompt"] = "Admin-set prompt for {{tenant.id}}."
    r = browser.post("/admin/tenants/acme", data)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/admin/tenants/acme?done=saved"

    def served():
        chat(admin_stack, "acme", "prompt-probe")
        sent = [q for q in admin_stack.upstream_requests() if "prompt-probe" in str(q["body"])]
        return sent and sent[-1]["body"]["messages"][0] == {"role": "system", "content": "Admin-set prompt for acme."}
    assert wait_until(served, timeout=5)
    page = browser.get("/admin/tenants/acme?done=saved").text
    assert "Every worker serves with the new settings" in page
    assert "Admin-set prompt for {{tenant.id}}." in page
    # The audit log has who, what, before and after.
    audit = browser.get("/admin/audit").text
    assert "tenant_update" in audit and "root" in audit and "Admin-set prompt" in audit


def test_missing_or_forged_csrf_changes_nothing(admin_stack, browser):
    before = admin_stack.sql("SELECT json, updated_at FROM tenants WHERE id = 'acme'")
    data = tenant_form(browser, "acme")
    data["name"] = "Hijacked"
    assert browser.post("/admin/tenants/acme", data, csrf=False).status_code == 403
    assert browser.post("/admin/tenants/acme", data, csrf="0" * 64).status_code == 403
    # A valid token from another session is not this session's token.
    other = Browser(admin_stack)
    other.login(user="other")
    assert browser.post("/admin/tenants/acme", data, csrf=other.csrf()).status_code == 403
    # The right token from a foreign origin is refused too.
    browser.origin = "https://evil.example"
    assert browser.post("/admin/tenants/acme", data).status_code == 403
    browser.origin = admin_stack.base
    assert browser.post("/admin/tenants/acme/keys", {"key_name": "x"}, csrf=False).status_code == 403
    assert browser.post("/admin/tenants/acme/delete", {"confirm": "acme"}, csrf=False).status_code == 403
    assert admin_stack.sql("SELECT json, updated_at FROM tenants WHERE id = 'acme'") == before
    assert admin_stack.sql("SELECT COUNT(*) FROM api_keys WHERE tenant_id = 'acme' AND name = 'x'")[0][0] == 0


def test_invalid_settings_are_shown_at_their_field_and_nothing_is_saved(admin_stack, browser):
    before = admin_stack.sql("SELECT json FROM tenants WHERE id = 'globex'")
    data = tenant_form(browser, "globex")
    data["name"] = "Changed but not saved"
    data["rate_limit.requests_per_minute"] = "lots"
    data["budget.daily_usd"] = "-5"
    r = browser.post("/admin/tenants/globex", data)
    assert r.status_code == 422
    assert 'aria-invalid="true"' in r.text
    field = r.text.split('id="f-rate_limit-requests_per_minute"', 1)[1][:400]
    assert "f-rate_limit-requests_per_minute-error" in field
    assert 'value="lots"' in r.text and 'value="Changed but not saved"' in r.text
    # Before: only the first invalid field was reported. Both are, each linked from the banner.
    assert "f-budget-daily_usd-error" in r.text.split('id="f-budget-daily_usd"', 1)[1][:400]
    assert "2 settings need attention" in r.text
    assert '<a href="#f-rate_limit-requests_per_minute">' in r.text and '<a href="#f-budget-daily_usd">' in r.text
    data["budget.daily_usd"] = ""
    data["rate_limit.requests_per_minute"] = "10"
    data["models"] = "mock-small, no-such-model"
    r = browser.post("/admin/tenants/globex", data)
    assert r.status_code == 422 and "no-such-model" in r.text
    assert admin_stack.sql("SELECT json FROM tenants WHERE id = 'globex'") == before


def test_hostile_input_is_stored_literally_and_rendered_inert(admin_stack, browser):
    r = browser.post("/admin/tenants", {"id": "hostile", "name": HOSTILE_NAME, "models": "fast"})
    assert r.status_code == 303, r.text
    data = tenant_form(browser, "hostile")
    data["system_prompt"] = HOSTILE_PROMPT
    data["variables"] = "q: ' OR 1=1; --"
    assert browser.post("/admin/tenants/hostile", data).status_code == 303
    stored = admin_stack.sql("SELECT json FROM tenants WHERE id = 'hostile'")[0][0]
    assert HOSTILE_PROMPT.replace('"', '\\"') in stored and "' OR 1=1; --" in stored
    assert admin_stack.sql("SELECT COUNT(*) FROM tenants")[0][0] > 10  # DROP TABLE did nothing
    for path in ["/admin/", "/admin/tenants/hostile", "/admin/audit", "/admin/audit?target=hostile"]:
        page = browser.get(path).text
        assert "<script>" not in page and "</textarea><script>" not in page, path
        assert "onmouseover=\"x\"" not in page, path  # the quote cannot close an attribute
    page = browser.get("/admin/tenants/hostile").text
    assert html.escape(HOSTILE_NAME, quote=True).replace("&#x27;", "&#39;") in page
    assert "&lt;/textarea&gt;&lt;script&gt;" in page
    # Invalid UTF-8 in a form is refused and changes nothing.
    before = admin_stack.sql("SELECT json FROM tenants WHERE id = 'hostile'")
    r = browser.client.post("/admin/tenants/hostile", content=b"_csrf=" + browser.csrf().encode() + b"&name=%FF%FE",
                            headers={"Origin": browser.origin, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400
    assert admin_stack.sql("SELECT json FROM tenants WHERE id = 'hostile'") == before
    # A very long value is refused at its field, and nothing is saved.
    data = tenant_form(browser, "hostile")
    data["name"] = "N" * 10_000
    r = browser.post("/admin/tenants/hostile", data)
    assert r.status_code == 422 and "longer than 200 bytes" in r.text
    assert admin_stack.sql("SELECT json FROM tenants WHERE id = 'hostile'") == before
    # Odd tenant ids in URLs are a 404, never a lookup.
    assert browser.get("/admin/tenants/..%2Fetc").status_code == 404
    assert browser.get("/admin/tenants/Bad%20Id").status_code == 404


def test_default_model_is_chosen_from_the_allow_list(admin_stack, browser):
    data = tenant_form(browser, "resilient")
    assert data["default_model"] == "fast"
    data["default_model"] = "backup"
    assert browser.post("/admin/tenants/resilient", data).status_code == 303
    stored = admin_stack.sql("SELECT json FROM tenants WHERE id = 'resilient'")[0][0]
    assert '"models":["backup","fast"]' in stored
    assert tenant_form(browser, "resilient")["default_model"] == "backup"
    data["default_model"] = "fast"
    assert browser.post("/admin/tenants/resilient", data).status_code == 303


def test_keys_created_once_listed_and_revoked(admin_stack, browser):
    form = {"key_name": "from-admin", "_once": browser.once("globex")}
    r = browser.post("/admin/tenants/globex/keys", form)
    # POST/redirect/GET: the key is shown by the page the redirect leads to, once.
    assert r.status_code == 303 and r.headers["location"].startswith("/admin/tenants/globex?done=keycreated")
    cookie = r.headers["set-cookie"]
    assert "tg_newkey=" in cookie and "HttpOnly" in cookie and "Path=/admin/tenants/globex" in cookie
    # Another admin session holding the same cookie (a shared browser, a stolen cookie) sees nothing.
    other = Browser(admin_stack)
    assert other.login(user="other").status_code == 303
    opener = re.search(r"tg_newkey=([0-9a-f]{64})", cookie).group(1)
    other.client.cookies.set("tg_newkey", opener, path="/admin/tenants/globex")
    assert "class=\"secret\"" not in other.get("/admin/tenants/globex").text
    shown = browser.get(r.headers["location"]).text
    key = re.search(r'<code class="secret">(tg_[0-9A-Za-z]+)</code>', shown).group(1)
    key_id = re.search(r"New key (key_[0-9a-f]+)", shown).group(1)
    # With where to use it: the tenant's base URL and a ready curl line.
    assert f"/tenant/globex/v1</code>" in shown and f"Authorization: Bearer {key}" in shown
    # Shown once: the next view of the page has it no more.
    assert key not in browser.get("/admin/tenants/globex").text
    # Before: a refresh of the POST created another key (1 became 3). The token is single-use.
    again = browser.post("/admin/tenants/globex/keys", form)
    assert again.status_code == 303 and "done=keyonce" in again.headers["location"]
    assert "no second key was created" in browser.get(again.headers["location"]).text
    assert admin_stack.sql("SELECT COUNT(*) FROM api_keys WHERE tenant_id = 'globex' AND name = 'from-admin'")[0][0] == 1
    # A form without its token creates nothing either.
    assert browser.post("/admin/tenants/globex/keys", {"key_name": "no-token"}).status_code == 400

    def status():
        return httpx.post(f"{admin_stack.base}/tenant/globex/v1/chat/completions", verify=False,
                          headers={"Authorization": f"Bearer {key}"},
                          json={"messages": [{"role": "user", "content": "hi"}]}).status_code
    assert wait_until(lambda: status() == 200, timeout=3)  # every worker knows it within a second
    page = browser.get("/admin/tenants/globex").text
    assert key_id in page and key not in page  # listed, never shown again
    # A key of another tenant cannot be revoked through this tenant's page.
    acme_key = admin_stack.sql("SELECT id FROM api_keys WHERE tenant_id = 'acme' LIMIT 1")[0][0]
    assert browser.post("/admin/tenants/globex/keys/revoke", {"key_id": acme_key}).status_code == 404
    assert browser.post("/admin/tenants/globex/keys/revoke", {"key_id": key_id}).status_code == 303
    # Revoked once: a second revoke finds no active key and audits nothing.
    audits = admin_stack.sql("SELECT COUNT(*) FROM admin_audit WHERE action = 'key_revoke'")[0][0]
    assert browser.post("/admin/tenants/globex/keys/revoke", {"key_id": key_id}).status_code == 404
    assert admin_stack.sql("SELECT COUNT(*) FROM admin_audit WHERE action = 'key_revoke'")[0][0] == audits
    assert wait_until(lambda: status() == 401, timeout=3)
    assert "key_revoke" in browser.get("/admin/audit").text


def test_a_key_made_on_the_page_has_its_own_models_and_expiry(admin_stack, browser):
    # acme may use fast, gone and mock-small: a model outside that list is refused, nothing is created.
    bad = browser.post("/admin/tenants/acme/keys", {"key_name": "wide", "key_models": "mock-small, pricey",
                                                    "_once": browser.once("acme")})
    assert bad.status_code == 400 and "pricey" in bad.text
    past = browser.post("/admin/tenants/acme/keys", {"key_name": "old", "key_expires": "2020-01-01",
                                                     "_once": browser.once("acme")})
    assert past.status_code == 400 and "future" in past.text
    assert admin_stack.sql("SELECT COUNT(*) FROM api_keys WHERE name IN ('wide', 'old')")[0][0] == 0
    r = browser.post("/admin/tenants/acme/keys", {"key_name": "narrow-page", "key_models": "mock-small",
                                                  "key_expires": "2099-12-31", "_once": browser.once("acme")})
    assert r.status_code == 303
    shown = browser.get(r.headers["location"]).text
    key = re.search(r'<code class="secret">(tg_[0-9A-Za-z]+)</code>', shown).group(1)
    row = admin_stack.sql("SELECT models, expires_at FROM api_keys WHERE name = 'narrow-page'")[0]
    assert row == ('["mock-small"]', 4102358400)

    def status(model):
        return httpx.post(f"{admin_stack.base}/tenant/acme/v1/chat/completions", verify=False,
                          headers={"Authorization": f"Bearer {key}"},
                          json={"model": model, "messages": [{"role": "user", "content": "hi"}]}).status_code
    assert wait_until(lambda: all(status("mock-small") == 200 for _ in range(4)), timeout=5)
    assert all(status("fast") == 403 for _ in range(4))
    page = browser.get("/admin/tenants/acme").text
    assert "2099-12-31" in page and "mock-small" in page and "Spent today / month" in page


def test_upstream_keys_are_write_only_and_never_shown(admin_stack, browser):
    secret = "sk-admin-typed-secret-0123456789"
    data = tenant_form(browser, "acme")
    assert "upstream_keys.up" in data and data["upstream_keys.up"] == ""  # a write-only field
    data["upstream_keys.up"] = secret
    assert browser.post("/admin/tenants/acme", data).status_code == 303
    for path in ["/admin/tenants/acme", "/admin/audit", "/admin/"]:
        page = browser.get(path).text
        assert secret not in page and "0123456789" not in page, path
    assert "sk-…6789" in browser.get("/admin/tenants/acme").text
    raw = (admin_stack.home / "tenantgate.db").read_bytes()
    assert secret.encode() not in raw
    assert all(secret not in (row[0] or "") + (row[1] or "")
               for row in admin_stack.sql("SELECT before, after FROM admin_audit"))

    def used():
        chat(admin_stack, "acme", "managed-key-probe")
        sent = [q for q in admin_stack.upstream_requests() if "managed-key-probe" in str(q["body"])]
        return sent and sent[-1]["headers"]["authorization"] == f"Bearer {secret}"
    assert wait_until(used, timeout=3)
    # Saving the form again without typing a key keeps the stored one; "remove" deletes it.
    data = tenant_form(browser, "acme")
    assert browser.post("/admin/tenants/acme", data).status_code == 303
    assert admin_stack.sql("SELECT COUNT(*) FROM upstream_keys WHERE tenant_id = 'acme'")[0][0] == 1
    data["remove_key.up"] = "on"
    assert browser.post("/admin/tenants/acme", data).status_code == 303
    assert admin_stack.sql("SELECT COUNT(*) FROM upstream_keys WHERE tenant_id = 'acme'")[0][0] == 0


def test_prompt_rollback(admin_stack, browser):
    for text in ["Version one.", "Version two."]:
        data = tenant_form(browser, "initech")
        data["system_prompt"] = text
        assert browser.post("/admin/tenants/initech", data).status_code == 303
    versions = admin_stack.sql("SELECT version, template FROM prompt_versions WHERE tenant_id = 'initech' "
                               "AND name = 'default' ORDER BY version")
    one = [v for v, t in versions if t == "Version one."][-1]
    assert browser.post("/admin/tenants/initech/rollback", {"name": "default", "version": str(one)}).status_code == 303
    stored = admin_stack.sql("SELECT json FROM tenants WHERE id = 'initech'")[0][0]
    assert '"system_prompt":"Version one."' in stored


def test_create_and_delete_tenant(admin_stack, browser):
    r = browser.post("/admin/tenants", {"id": "Not Valid", "name": "x", "models": ""})
    assert r.status_code == 422 and 'aria-invalid="true"' in r.text
    assert browser.post("/admin/tenants", {"id": "acme", "name": "dup", "models": ""}).status_code == 422
    assert browser.post("/admin/tenants", {"id": "newco", "name": "NewCo", "models": "mock-small"}).status_code == 303
    assert browser.get("/admin/tenants/newco").status_code == 200
    r = browser.post("/admin/tenants/newco/delete", {"confirm": "wrong"})
    assert r.status_code == 422
    assert admin_stack.sql("SELECT COUNT(*) FROM tenants WHERE id = 'newco'")[0][0] == 1
    # Even as the default tenant (which then names nobody and is cleared, as the CLI does).
    path = admin_stack.home / "default-tenant.yaml"
    path.write_text("default_tenant: newco\n")
    admin_stack.cli("config", "import", str(path))
    assert browser.post("/admin/tenants/newco/delete", {"confirm": "newco"}).status_code == 303
    assert admin_stack.sql("SELECT COUNT(*) FROM tenants WHERE id = 'newco'")[0][0] == 0
    assert admin_stack.sql("SELECT json FROM settings WHERE key = 'default_tenant'") in ([], [("null",)])
    assert browser.get("/admin/tenants/newco").status_code == 404


def test_dashboard_and_executions_show_usage(admin_stack, browser):
    for i in range(3):
        assert chat(admin_stack, "limited", f"dash-{i}").status_code == 200
    assert wait_until(lambda: admin_stack.sql("SELECT COUNT(*) FROM executions WHERE tenant = 'limited'")[0][0] >= 3)
    page = browser.get("/admin/").text
    assert "<svg" in page and "Daily spend" in page
    assert '<a href="/admin/tenants/limited">limited</a>' in page
    page = browser.get("/admin/executions?tenant=limited").text
    assert page.count("<tr class=\"ok\">") >= 3
    executed = admin_stack.sql("SELECT COUNT(*) FROM executions WHERE tenant = 'limited'")[0][0]
    # The totals for the filter come from the daily rollups and agree with the execution log.
    totals = re.search(r": (\d+) requests, (\d+) refused .*?, (\d+) failed", page, re.S)
    assert totals.group(1) == str(executed)
    refused = admin_stack.sql("SELECT COUNT(*) FROM executions WHERE tenant = 'limited' AND status BETWEEN 400 AND 498")
    assert totals.group(2) == str(refused[0][0]) and totals.group(3) == "0"
    # The dashboard counts refusals apart from failures: a refusal is not an error.
    assert chat(admin_stack, "limited", "dash-refused", model="gone").status_code in (403, 404)
    assert wait_until(lambda: admin_stack.sql(
        "SELECT COUNT(*) FROM executions WHERE tenant = 'limited' AND status BETWEEN 400 AND 498")[0][0] > refused[0][0])
    dash = browser.get("/admin/").text
    assert "Refused, 24 h" in dash and "Failure rate, 24 h" in dash and "Error rate" not in dash
    requests, failures = admin_stack.sql(
        "SELECT SUM(requests), SUM(errors) FROM usage_hourly WHERE hour > ?", int(time.time() // 3600) - 24)[0]
    rate = f"{failures * 1000 // requests // 10}.{failures * 1000 // requests % 10} %"
    assert f"Failure rate, 24 h</h2><p>{rate}" in dash, (rate, dash[dash.find("Failure rate"):][:200])
    # Filters stay inside the tenant asked for: no other tenant's rows.
    assert "/admin/tenants/acme\"" not in page
    r = browser.get("/admin/executions?tenant=<x>&status=abc&from=yesterday")
    assert r.status_code == 400 and "<x>" not in r.text


def test_cli_changes_are_in_the_audit_log(admin_stack, browser):
    admin_stack.cli("tenant", "set", "limited", "name", "Limited by CLI")
    key = admin_stack.cli("key", "create", "limited", "--name", "cli-audit").stdout
    key_id = re.search(r"created (key_[0-9a-f]+)", key).group(1)
    admin_stack.cli("key", "revoke", key_id)
    rows = admin_stack.sql("SELECT user, address, action, target, before, after FROM admin_audit "
                           "WHERE user LIKE 'cli:%' ORDER BY id")
    actions = [(r[2], r[3]) for r in rows]
    assert ("tenant_update", "limited") in actions
    assert ("key_create", "limited") in actions and ("key_revoke", "limited") in actions
    update = [r for r in rows if r[2] == "tenant_update" and r[3] == "limited"][-1]
    assert update[1] == "local" and "Limited by CLI" in update[5] and "Limited by CLI" not in (update[4] or "")
    assert all("tg_" not in (r[4] or "") + (r[5] or "") for r in rows)  # key secrets never recorded
    page = browser.get("/admin/audit?target=limited").text
    assert "cli:" in page and "Limited by CLI" in page
    # The same changes are in the tenant's tamper-evident chain, which verifies.
    assert "Audit chain <code>limited</code>" in page and "verified" in page
    kinds = [k for (k,) in admin_stack.sql("SELECT kind FROM audit_events WHERE tenant = 'limited' ORDER BY seq")]
    assert "tenant_update" in kinds and "key_create" in kinds and "key_revoke" in kinds


def test_guardrail_policies_are_edited_shown_and_enforced(admin_stack, browser):
    data = tenant_form(browser, "globex")
    assert data["policies"] == ""
    # A catastrophic pattern is refused at its field and nothing is saved.
    data["policies"] = '[{"name": "slow", "phase": "egress", "pattern": "(a+)+$", "action": "redact"}]'
    r = browser.post("/admin/tenants/globex", data)
    assert r.status_code == 422 and "catastrophic" in r.text
    assert "f-policies-error" in r.text.split('id="f-policies"', 1)[1][:600]
    data["policies"] = "not json"
    assert browser.post("/admin/tenants/globex", data).status_code == 422
    data["policies"] = '[{"name": "no-parts", "phase": "egress", "keywords": ["part1"], "action": "redact"}]'
    r = browser.post("/admin/tenants/globex", data)
    assert r.status_code == 303, r.text

    def redacted():
        reply = httpx.post(f"{admin_stack.base}/tenant/globex/v1/chat/completions", verify=False, timeout=30,
                           headers={"Authorization": f"Bearer {admin_stack.keys['globex']}"},
                           json={"model": "mock-small", "messages": [{"role": "user", "content": "part1 please"}]})
        return reply.status_code == 200 and "[REDACTED:no-parts]" in reply.json()["choices"][0]["message"]["content"]
    assert wait_until(redacted, timeout=5)
    page = browser.get("/admin/tenants/globex").text
    assert "Guardrail policies" in page and "no-parts" in page and "redact" in page
    # The form shows the saved rules again; an empty box removes them.
    data = tenant_form(browser, "globex")
    assert "no-parts" in data["policies"]
    data["policies"] = ""
    assert browser.post("/admin/tenants/globex", data).status_code == 303
    assert admin_stack.sql("SELECT json FROM tenants WHERE id = 'globex'")[0][0].find("no-parts") < 0


def test_cache_figures_and_purge(admin_stack, browser):
    body = {"model": "fast", "temperature": 0, "messages": [{"role": "user", "content": "admin-cache-probe"}]}
    for _ in range(2):
        httpx.post(f"{admin_stack.base}/tenant/cached/v1/chat/completions", verify=False, timeout=30,
                   headers={"Authorization": f"Bearer {admin_stack.keys['cached']}"}, json=body)
    assert wait_until(lambda: admin_stack.sql("SELECT COUNT(*) FROM cache_entries WHERE tenant = 'cached'")[0][0] >= 1)
    page = browser.get("/admin/tenants/cached").text
    assert "Response cache" in page and "Purge cached" in page
    # The tenant's storage against its quota (the cache entry is in it).
    assert re.search(r"Stored</th><td>\d+ KiB of 1024 MiB", page)
    # Without the CSRF token nothing is purged.
    assert browser.post("/admin/tenants/cached/cache/purge", {"go": "1"}, csrf=False).status_code == 403
    assert admin_stack.sql("SELECT COUNT(*) FROM cache_entries WHERE tenant = 'cached'")[0][0] >= 1
    r = browser.post("/admin/tenants/cached/cache/purge", {})
    assert r.status_code == 303 and r.headers["location"] == "/admin/tenants/cached?done=purged"
    assert admin_stack.sql("SELECT COUNT(*) FROM cache_entries WHERE tenant = 'cached'")[0][0] == 0
    assert admin_stack.sql("SELECT action FROM admin_audit WHERE target = 'cached' ORDER BY id DESC LIMIT 1") == [
        ("cache_purge",)]


def test_login_is_throttled_per_user(admin_stack):
    b = Browser(admin_stack)
    for _ in range(5):
        assert b.login(user="victim", password="not the password").status_code == 401
    r = b.login(user="victim")
    assert r.status_code == 429 and "retry-after" in r.headers
    # Another user from the same address is still fine.
    assert Browser(admin_stack).login(user="other").status_code == 303


def test_strangers_cannot_lock_the_admin_out(admin_stack):
    s = admin_stack
    s.cli("admin", "password", "--user", "boss", input=PASSWORD + "\n")
    home = Browser(s, "127.0.0.1")
    assert home.login(user="boss").status_code == 303  # 127.0.0.1 is now a known address for boss
    # A stranger guessing locks out only its own (account, address) pair…
    guesser = Browser(s, "127.0.0.9")
    for _ in range(5):
        assert guesser.login(user="boss", password="guessing again").status_code == 401
    assert guesser.login(user="boss").status_code == 429
    # …and once the account is under attack, only addresses it has logged in from may try at all.
    r = Browser(s, "127.0.0.10").login(user="boss")
    assert r.status_code == 429 and "logged in from before" in r.text
    for i in range(2, 5):
        assert Browser(s, f"127.0.0.{i}").login(user="boss", password="guess").status_code == 429
    assert Browser(s, "127.0.0.1").login(user="boss").status_code == 303
    # Failures, lockouts and the password change are in the audit log.
    rows = s.sql("SELECT action, user, address FROM admin_audit WHERE action IN "
                 "('login_failed', 'admin_password', 'login', 'logout')")
    assert ("admin_password", "boss") in [(a, t) for a, _, t in
                                          s.sql("SELECT action, user, target FROM admin_audit")] or \
        any(a == "admin_password" for a, _, _ in rows)
    assert ("login_failed", "boss", "127.0.0.9") in rows
    assert ("login", "boss", "127.0.0.1") in rows


def test_logout_and_password_changes_are_audited(admin_stack):
    b = Browser(admin_stack)
    assert b.login(user="other").status_code == 303
    assert b.post("/admin/logout", {}).status_code == 303
    actions = admin_stack.sql("SELECT action, user, target FROM admin_audit WHERE action IN ('logout', 'admin_password')")
    assert ("logout", "other", "") in actions
    assert any(a == "admin_password" and t == "other" and u.startswith("cli:") for a, u, t in actions)


def test_login_without_origin_is_refused(admin_stack):
    with httpx.Client(base_url=admin_stack.base, verify=False) as c:
        assert c.post("/admin/login", data={"user": "root", "password": PASSWORD}).status_code == 403


def test_a_spray_of_names_and_addresses_is_bounded_by_the_workers_check_rate():
    """Rotating user names and source addresses passes every per-subject limit; the worker's own bucket of
    password checks (a burst of 30, then one a second) bounds the PBKDF2 runs, the operator's known address
    still logs in, and the API is served meanwhile (logins hold no connection of the API's)."""
    import threading
    s = Stack(workers=1).start()
    try:
        s.cli("admin", "password", "--user", "root", input=PASSWORD + "\n")
        assert Browser(s, "127.0.0.1").login(user="root").status_code == 303  # a known address from now on
        statuses = []
        lock = threading.Lock()
        started = time.monotonic()

        def spray(n):
            for i in range(n, 96, 8):
                b = Browser(s, f"127.0.3.{i + 1}")  # each address and each name tries once
                r = b.login(user=f"spray-{i}", password="guess")
                with lock:
                    statuses.append((r.status_code, r.headers.get("retry-after")))

        threads = [threading.Thread(target=spray, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        api = httpx.get(f"{s.base}/tenant/acme/v1/models", verify=False, timeout=10,
                        headers={"Authorization": f"Bearer {s.keys['acme']}"})
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        assert api.status_code == 200
        checked = sum(1 for code, _ in statuses if code == 401)
        refused = [retry for code, retry in statuses if code == 429]
        # Before: all 96 ran a 600k-round PBKDF2 (401 each).
        assert checked <= 30 + int(elapsed) + 1, (checked, elapsed, statuses)
        assert refused and all(retry for retry in refused)
        assert {code for code, _ in statuses} <= {401, 429, 503}
        # The operator's known address is never held up by the spray.
        assert Browser(s, "127.0.0.1").login(user="root").status_code == 303
    finally:
        s.stop()


def test_flags_show_what_applies_and_where_it_comes_from(admin_stack, browser):
    page = browser.get("/admin/tenants/globex").text
    # Before: "not set" for built-in flags that /v1/tenant-info reported on.
    streaming = page.split('id="f-features-streaming"', 1)[1][:600]
    assert "Applies: on (built in)" in streaming
    semantic = page.split('id="f-features-semantic_cache"', 1)[1][:600]
    assert "Applies: off (built in)" in semantic
    data = tenant_form(browser, "globex")
    data["features.streaming"] = "off"
    assert browser.post("/admin/tenants/globex", data).status_code == 303
    page = browser.get("/admin/tenants/globex").text
    assert "Applies: off (this tenant)" in page.split('id="f-features-streaming"', 1)[1][:600]
    data["features.streaming"] = ""
    assert browser.post("/admin/tenants/globex", data).status_code == 303


def test_policies_are_edited_as_yaml(admin_stack, browser):
    data = tenant_form(browser, "globex")
    data["policies"] = "- preset: secrets-block\n- {name: yaml-cards, phase: egress, detector: pii.card, action: redact}\n"
    assert browser.post("/admin/tenants/globex", data).status_code == 303
    shown = tenant_form(browser, "globex")["policies"]
    assert "yaml-cards" in shown and not shown.lstrip().startswith("[")  # shown back as YAML, not JSON
    assert browser.post("/admin/tenants/globex", tenant_form(browser, "globex")).status_code == 303  # round trip
    stored = admin_stack.sql("SELECT json FROM tenants WHERE id = 'globex'")[0][0]
    assert '"name":"yaml-cards"' in stored.replace(" ", "")
    data = tenant_form(browser, "globex")
    data["policies"] = ""
    assert browser.post("/admin/tenants/globex", data).status_code == 303


def test_the_catalog_and_the_audit_page_read_right(admin_stack, browser):
    page = browser.get("/admin/catalog").text
    assert "Backends" in page and "<code>up</code>" in page and "<code>TG_TEST_UPSTREAM_KEY</code>" in page
    assert "<code>fast</code>" in page and "upstream-fast-v2" in page
    # The audit page: an admin user as target is text, not a link to a tenant page that does not exist.
    admin_stack.cli("admin", "password", "--user", "auditee", input=PASSWORD + "\n")
    audit = browser.get("/admin/audit").text
    assert '<a href="/admin/tenants/auditee">' not in audit and "auditee" in audit
    # A one-model change is shown as that model's changed field, not the whole catalog twice.
    cfg = admin_stack.home / "price.yaml"
    cfg.write_text("models:\n  fast: {backend: up, upstream_model: upstream-fast-v2, input_per_mtok: 1.5, output_per_mtok: 2}\n")
    admin_stack.cli("config", "import", str(cfg))
    audit = browser.get("/admin/audit").text
    row = audit.split("config_import", 1)[1].split("</tr>", 1)[0]
    assert "<code>models.fast.input_per_mtok</code>" in row and "mock-small" not in row


def test_zz_login_is_throttled_per_address(admin_stack):
    b = Browser(admin_stack)
    for i in range(20):
        b.login(user=f"spray-{i}", password="guess")
    assert b.login(user="root").status_code == 429



