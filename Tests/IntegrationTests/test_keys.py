"""Keys with their own settings (issue 31): a model allow-list that narrows the tenant's, an expiry, rotation
with a grace period, and refusals that say why (expired, revoked), through nginx and the worker pool."""

import json
import time

import httpx
import openai
import pytest

from conftest import wait_until


def chat(model="mock-small", content="hello"):
    return {"model": model, "messages": [{"role": "user", "content": content}]}


def call(stack, key, model="mock-small", tenant="acme"):
    return httpx.post(f"{stack.base}/tenant/{tenant}/v1/chat/completions", json=chat(model), verify=False,
                      timeout=30, headers={"Authorization": f"Bearer {key}"})


def known(stack, key, tenant="acme"):
    """Whether the workers know the key yet (a new key reaches them with the next config poll)."""
    return httpx.get(f"{stack.base}/tenant/{tenant}/v1/models", verify=False,
                     headers={"Authorization": f"Bearer {key}"}).status_code == 200


def create(stack, *args, tenant="acme", wait=True):
    out = stack.cli("key", "create", tenant, *args, "--json").stdout
    made = json.loads(out)
    if wait:
        assert wait_until(lambda: all(known(stack, made["key"], tenant) for _ in range(4)), timeout=5)
    return made["id"], made["key"]


def settled_code(stack, key, code, model="mock-small", tenant="acme", timeout=10):
    """Waits until every worker answers `key`'s call with the error `code` (a change reaches each worker
    with its next config poll)."""
    def all_refused():
        answers = [call(stack, key, model, tenant) for _ in range(6)]
        return all(a.status_code >= 400 and a.json().get("error", {}).get("code") == code for a in answers)
    assert wait_until(all_refused, timeout=timeout)


def error_code(response):
    return response.json()["error"]["code"]


def test_a_keys_model_list_narrows_the_tenants(stack):
    key_id, key = create(stack, "--name", "narrow", "--models", "mock-small")
    assert call(stack, key, "mock-small").status_code == 200
    refused = call(stack, key, "fast")
    assert refused.status_code == 403 and error_code(refused) == "model_not_allowed"
    # The tenant's other keys are not narrowed.
    assert call(stack, stack.keys["acme"], "fast").status_code == 200
    models = httpx.get(f"{stack.base}/tenant/acme/v1/models", verify=False,
                       headers={"Authorization": f"Bearer {key}"}).json()
    assert [m["id"] for m in models["data"]] == ["mock-small"]
    info = httpx.get(f"{stack.base}/tenant/acme/v1/tenant-info", verify=False,
                     headers={"Authorization": f"Bearer {key}"}).json()
    assert info["key"] == {"id": key_id, "expires_at": None, "models": ["mock-small"]}
    assert info["models"] == ["mock-small"]


def test_a_key_cannot_name_models_outside_its_tenants_list(stack):
    out = stack.cli("key", "create", "acme", "--models", "mock-small,sonnet", check=False)
    assert out.returncode != 0 and "not on tenant acme's allow-list" in out.stderr
    key_id, _ = create(stack, "--name", "wider")
    out = stack.cli("key", "set", key_id, "--models", "pricey", check=False)
    assert out.returncode != 0 and "pricey" in out.stderr
    # Nothing was changed by the refusals.
    listed = json.loads(stack.cli("key", "list", "acme", "--json").stdout)
    assert next(k for k in listed if k["id"] == key_id)["models"] is None


def test_key_set_changes_models_on_every_worker(stack):
    key_id, key = create(stack, "--name", "changing")
    assert call(stack, key, "fast").status_code == 200
    stack.cli("key", "set", key_id, "--models", "mock-small")
    assert wait_until(lambda: all(call(stack, key, "fast").status_code == 403 for _ in range(6)), timeout=5)
    stack.cli("key", "set", key_id, "--models", "all")
    assert wait_until(lambda: all(call(stack, key, "fast").status_code == 200 for _ in range(6)), timeout=5)


def test_an_expired_key_is_refused_with_key_expired(stack):
    key_id, key = create(stack, "--name", "short", "--expires", "12s")
    listed = json.loads(stack.cli("key", "list", "acme", "--json").stdout)
    expires = next(k for k in listed if k["id"] == key_id)["expires_at"]
    assert expires.endswith("Z")
    assert call(stack, key).status_code == 200
    # From its second on, on every worker: several calls in a row, all refused as expired.
    settled_code(stack, key, "key_expired", timeout=20)
    assert call(stack, key).status_code == 401
    # The official SDK raises an authentication error naming the code.
    client = openai.OpenAI(base_url=stack.base + "/tenant/acme/v1", api_key=key,
                           http_client=httpx.Client(verify=False))
    with pytest.raises(openai.AuthenticationError) as raised:
        client.chat.completions.create(**chat())
    assert raised.value.code == "key_expired"
    # An expiry in the past is refused by the CLI.
    out = stack.cli("key", "create", "acme", "--expires", "2020-01-01", check=False)
    assert out.returncode != 0 and "future" in out.stderr


def test_a_revoked_key_is_refused_with_key_revoked(stack):
    key_id, key = create(stack, "--name", "gone")
    assert call(stack, key).status_code == 200
    stack.cli("key", "revoke", key_id)
    settled_code(stack, key, "key_revoked")
    # A made-up key is still just invalid.
    assert error_code(call(stack, "tg_" + "x" * 44)) == "invalid_api_key"


def test_rotation_keeps_the_id_and_the_old_secret_works_until_the_grace_ends(stack):
    key_id, old = create(stack, "--name", "rotating", "--models", "mock-small")
    assert call(stack, old).status_code == 200
    rotated = json.loads(stack.cli("key", "rotate", key_id, "--grace", "15s", "--json").stdout)
    new = rotated["key"]
    assert rotated["id"] == key_id and new != old and new.startswith("tg_")
    assert wait_until(lambda: all(known(stack, new) for _ in range(4)), timeout=5)
    # The old secret still works during the grace; the settings carried over to the new one.
    assert call(stack, old).status_code == 200
    assert call(stack, new).status_code == 200
    assert error_code(call(stack, new, "fast")) == "model_not_allowed"
    settled_code(stack, old, "key_expired", timeout=25)
    assert call(stack, new).status_code == 200
    # Both secrets' calls are the same key's history.
    assert wait_until(lambda: stack.sql(
        "SELECT COUNT(*) FROM executions WHERE key_id = ? AND status = 200", key_id)[0][0] >= 4)
    # Without a grace, the old secret stops at once.
    again = json.loads(stack.cli("key", "rotate", key_id, "--json").stdout)["key"]
    assert wait_until(lambda: all(known(stack, again) for _ in range(4)), timeout=5)
    settled_code(stack, new, "key_expired")


def test_last_use_is_recorded(stack):
    key_id, key = create(stack, "--name", "used", wait=False)
    listed = json.loads(stack.cli("key", "list", "acme", "--json").stdout)
    assert next(k for k in listed if k["id"] == key_id)["last_used_at"] is None
    assert wait_until(lambda: call(stack, key).status_code == 200, timeout=5)

    def used():
        listed = json.loads(stack.cli("key", "list", "acme", "--json").stdout)
        return next(k for k in listed if k["id"] == key_id)["last_used_at"]

    assert wait_until(lambda: used() is not None, timeout=5)


def test_a_key_spends_nothing_on_an_embedding_model_outside_its_list(stack):
    base = f"{stack.base}/tenant/docs/v1/collections"
    owner = {"Authorization": f"Bearer {stack.keys['docs']}"}
    name = f"keyed-{int(time.time() * 1000)}"
    r = httpx.post(base, json={"name": name, "embedding_model": "mock-small"}, headers=owner, verify=False)
    assert r.status_code == 201, r.text
    _, key = create(stack, "--models", "fast", tenant="docs")
    narrow = {"Authorization": f"Bearer {key}"}

    def add():
        return httpx.post(f"{base}/{name}/documents", json={"text": "A short note about keys."}, headers=narrow,
                          verify=False, timeout=30)
    refused = add()
    assert refused.status_code == 403 and error_code(refused) == "model_not_allowed"
    assert stack.sql("SELECT COUNT(*) FROM executions WHERE key_id IN (SELECT id FROM api_keys WHERE prefix = ?) "
                     "AND endpoint = 'embeddings'", key[:12])[0][0] == 0
    # The tenant's own key (no list) may embed with it.
    ok = httpx.post(f"{base}/{name}/documents", json={"text": "A short note about keys."}, headers=owner,
                    verify=False, timeout=30)
    assert ok.status_code == 201, ok.text


def test_spend_by_key_equals_its_execution_rows(stack):
    from decimal import Decimal
    key_id, key = create(stack, "--name", "spender", "--models", "fast")
    other_id, other = create(stack, "--name", "other-spender")
    for content in ("one", "two words", "three words here"):
        assert call(stack, key, "fast").status_code == 200
    assert call(stack, other, "fast").status_code == 200
    assert call(stack, key, "mock-small").status_code == 403  # refused: counted as refused, costs nothing

    def executions(kid):
        return stack.sql("SELECT COUNT(*), COALESCE(SUM(cost_nano), 0) FROM executions WHERE key_id = ?", kid)[0]
    assert wait_until(lambda: executions(key_id)[0] == 4 and executions(other_id)[0] == 1)
    count, nano = executions(key_id)
    assert nano > 0
    listed = {k["id"]: k for k in json.loads(stack.cli("key", "list", "acme", "--json").stdout)}
    assert Decimal(str(listed[key_id]["spent_today_usd"])) == Decimal(nano) / Decimal(10**9)
    assert Decimal(str(listed[key_id]["spent_this_month_usd"])) == Decimal(nano) / Decimal(10**9)
    assert Decimal(str(listed[other_id]["spent_today_usd"])) == Decimal(executions(other_id)[1]) / Decimal(10**9)
    rows = {r["key"]: r for r in json.loads(stack.cli("usage", "acme", "--by", "key", "--json").stdout)}
    assert rows[key_id]["requests"] == 4 and rows[key_id]["refused"] == 1
    assert Decimal(str(rows[key_id]["cost_usd"])) == Decimal(nano) / Decimal(10**9)
    # Another tenant's usage by key does not list this tenant's keys.
    assert key_id not in {r["key"] for r in json.loads(stack.cli("usage", "globex", "--by", "key", "--json").stdout)}
