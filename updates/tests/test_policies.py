"""Update policy priority: self → label → per-container policy → enabled categories → allow."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from containers.models import Container, DockerHost
from updates.choices import Policy, PolicyRule
from updates.models import PolicyCategory, UpdatePolicy
from updates.policies import decide, decide_many

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("seeded_categories")]


def _container(host, name, image="127.0.0.1:5000/demo/app:1.0", labels=None):
    short = uuid.uuid4().hex[:12]
    return Container.objects.create(host=host, short_id=short, container_id=short + "0" * 52, name=name, image=image,
                                    labels=labels or {})


@pytest.fixture
def host():
    return DockerHost.objects.create(name=f"pol-{uuid.uuid4().hex[:6]}", url="unix:///nonexistent.sock")


def test_seeded_categories_are_exactly_the_issue_list():
    cats = {c.name: c for c in PolicyCategory.objects.all()}
    assert set(cats) == {"databases", "proxies", "monitoring", "critical", "custom"}
    assert {"postgres", "mysql", "mariadb", "mongo", "redis", "influxdb", "elasticsearch"} <= set(cats["databases"].patterns)
    assert cats["proxies"].patterns == ["traefik", "nginx", "caddy", "haproxy", "envoy"]
    assert cats["monitoring"].patterns == ["grafana", "prometheus", "alertmanager", "uptime-kuma"]
    assert cats["critical"].patterns == ["portainer", "watchtower", "dockmon"]
    assert cats["custom"].patterns == []
    assert all(c.builtin for c in cats.values())


def test_default_is_allow(host):
    decision = decide(_container(host, "web"))
    assert (decision.policy, decision.rule) == (Policy.ALLOW, PolicyRule.DEFAULT)
    assert [s["rule"] for s in decision.steps] == ["self", "label", "container", "category", "default"]


def test_enabled_category_matches_name_or_image_and_disabled_does_not(host):
    by_name = decide(_container(host, "shop-postgres-1"))
    assert (by_name.policy, by_name.rule, by_name.details["category"], by_name.details["matched_on"]) == (
        Policy.WARN, PolicyRule.CATEGORY, "databases", "name")
    by_image = decide(_container(host, "db", image="docker.io/library/MariaDB:11"))
    assert (by_image.policy, by_image.details["pattern"], by_image.details["matched_on"]) == (Policy.WARN, "mariadb", "image")
    # proxies ship disabled: nginx is allowed until someone enables the category
    assert decide(_container(host, "edge", image="nginx:1.25")).rule == PolicyRule.DEFAULT
    PolicyCategory.objects.filter(name="proxies").update(enabled=True)
    assert decide(_container(host, "edge2", image="nginx:1.25")).details["category"] == "proxies"


def test_custom_patterns_and_strictest_category_wins(host):
    PolicyCategory.objects.filter(name="custom").update(enabled=True, policy=Policy.BLOCK, patterns=["payments"])
    decision = decide(_container(host, "payments-redis"))  # databases (warn) and custom (block) both match
    assert (decision.policy, decision.details["category"]) == (Policy.BLOCK, "custom")
    assert {m["category"] for m in decision.details["all_matches"]} == {"databases", "custom"}


def test_per_container_policy_beats_categories(host):
    c = _container(host, "postgres-main")
    UpdatePolicy.objects.create(container=c, policy=Policy.ALLOW, note="we test upgrades")
    decision = decide(c)
    assert (decision.policy, decision.rule) == (Policy.ALLOW, PolicyRule.CONTAINER)


@pytest.mark.parametrize("label", ["dockmon.update_policy", "com.dockmon.update.policy"])
def test_label_overrides_the_per_container_policy_and_categories(host, label):
    c = _container(host, "postgres-labelled", labels={label: "Allow"})
    UpdatePolicy.objects.create(container=c, policy=Policy.BLOCK)
    decision = decide(c)
    assert (decision.policy, decision.rule, decision.details["label"]) == (Policy.ALLOW, PolicyRule.LABEL, label)


def test_invalid_label_value_is_ignored_and_said_so(host):
    c = _container(host, "app", labels={"dockmon.update_policy": "sometimes"})
    UpdatePolicy.objects.create(container=c, policy=Policy.WARN)
    decision = decide(c)
    assert decision.rule == PolicyRule.CONTAINER
    assert "ignored" in decision.steps[1]["note"]


def test_dockmon_never_updates_itself_whatever_the_label_says(host, settings):
    itself = _container(host, "monitoring", image="ghcr.io/acme/dockmon:1.0", labels={"dockmon.update_policy": "allow"})
    decision = decide(itself)
    assert (decision.policy, decision.rule) == (Policy.BLOCK, PolicyRule.SELF)
    assert not decision.allows_manual_update(force=True)
    marked = _container(host, "x", labels={"com.dockmon.self": "true", "dockmon.update_policy": "allow"})
    assert decide(marked).rule == PolicyRule.SELF
    from updates.policies import _own_short_id

    own = _container(host, "whatever", labels={"dockmon.update_policy": "allow"})
    settings.DOCKMON_SELF_CONTAINER_ID = own.container_id
    _own_short_id.cache_clear()
    try:
        assert decide(own).rule == PolicyRule.SELF
    finally:
        _own_short_id.cache_clear()
    # The testbed's local busybox (dockmon/busybox) is not DockMon: only the repository name counts.
    assert decide(_container(host, "bb", image="dockmon/busybox:latest")).rule != PolicyRule.SELF


def test_warn_and_block_semantics(host):
    warn = decide(_container(host, "mysql-1"))
    assert (warn.allows_auto_update, warn.allows_manual_update(), warn.allows_manual_update(force=True)) == (False, False, True)
    block = decide(_container(host, "portainer"))
    assert (block.policy, block.allows_manual_update(force=True)) == (Policy.BLOCK, False)


def test_decide_many_uses_two_queries(host, django_assert_num_queries):
    containers = [_container(host, f"c{i}") for i in range(30)]
    UpdatePolicy.objects.create(container=containers[3], policy=Policy.BLOCK)
    with django_assert_num_queries(2):
        decisions = decide_many(containers)
    assert decisions[containers[3].pk].policy == Policy.BLOCK
    assert decisions[containers[4].pk].policy == Policy.ALLOW


@pytest.mark.django_db(transaction=True)
def test_every_rule_on_a_real_container_through_the_explain_endpoints(alpha, make_host, run_container, unique, admin_client, sync):
    """A real container's labels come from the engine: the label beats a per-container block."""
    host = make_host(alpha)
    cid = run_container(alpha, f"postgres-{unique}", image="127.0.0.1:5000/demo/app:1.0",
                        extra=("--label", "dockmon.update_policy=allow"))
    plain = run_container(alpha, f"postgres-plain-{unique}", image="127.0.0.1:5000/demo/app:1.0")
    sync(host)
    key, plain_key = f"{host.pk}:{cid[:12]}", f"{host.pk}:{plain[:12]}"
    UpdatePolicy.objects.create(container_id=key, policy=Policy.BLOCK)

    data = admin_client.get(f"/api/v1/updates/{key}/explain/").json()
    assert (data["policy"], data["rule"]) == ("allow", "label")
    assert admin_client.get(f"/api/v1/containers/{key}/update-policy/").json() == data
    data = admin_client.get(f"/api/v1/containers/{plain_key}/update-policy/").json()
    assert (data["policy"], data["rule"], data["details"]["category"]) == ("warn", "category", "databases")
    assert (data["auto_update"], data["manual_update"], data["manual_update_with_force"]) == (False, False, True)
    UpdatePolicy.objects.create(container_id=plain_key, policy=Policy.ALLOW)
    assert admin_client.get(f"/api/v1/containers/{plain_key}/update-policy/").json()["rule"] == "container"
    PolicyCategory.objects.filter(name="databases").update(enabled=False)
    UpdatePolicy.objects.filter(container_id=plain_key).delete()
    assert admin_client.get(f"/api/v1/containers/{plain_key}/update-policy/").json()["rule"] == "default"


def test_explain_is_404_for_outsiders(host, django_user_model):
    c = _container(host, "secret")
    outsider = django_user_model.objects.create_user("pol-outsider", password="pw-outsider-1")
    client = APIClient()
    client.force_authenticate(outsider)
    assert client.get(f"/api/v1/updates/{c.key}/explain/").status_code == 404
    assert client.get(f"/api/v1/containers/{c.key}/update-policy/").status_code == 404
