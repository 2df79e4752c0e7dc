"""Rule templates run in a sandbox: allowlisted tags and filters, the documented variables only
(no attributes, no methods), bounded loops and a capped output. A refused template is a 400
field error when saved (API and admin) and an error note, never a crash, when rendered."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from alerts import template_sandbox, templating
from alerts.models import AlertRule
from alerts.tests.conftest import make_rule

pytestmark = pytest.mark.trust

REFUSED = {
    "load": "{% load humanize %}{{ value|intcomma }}",
    "include": "{% include 'admin/base.html' %}",
    "extends": "{% extends 'base.html' %}",
    "debug": "{% debug %}",
    "url": "{% url 'admin:index' %}",
    "csrf_token": "{% csrf_token %}",
    "lorem": "{% lorem 5000 w %}",
    "widthratio": "{% widthratio 1 1 999999999999 %}",
    "regroup": "{% regroup container by host as g %}",
    "dunder attribute": "{{ container.__class__ }}",
    "method call": "{{ container.upper }}",
    "attribute of a loop variable": "{% for c in container %}{{ c.upper }}{% endfor %}",
    "attribute in an if": "{% if message.split %}x{% endif %}",
    "attribute as a filter argument": "{{ container|default:host.lower }}",
    "undocumented variable": "{{ settings }}",
    "request": "{{ request }}",
    "forloop.parentloop": "{% for c in container %}{{ forloop.parentloop }}{% endfor %}",
    "padding filter": "{{ host|ljust:'100000000' }}",
    "stringformat": "{{ value|stringformat:'0100000000d' }}",
    "floatformat beyond its bound": "{{ value|floatformat:100000 }}",
    "floatformat with a variable argument": "{{ value|floatformat:value }}",
    "truncatechars with a variable argument": "{{ message|truncatechars:value }}",
    "dictsort": "{{ hits|dictsort:'x' }}",
    "random": "{{ container|random }}",
    "syntax error": "{% if %}",
}


@pytest.mark.parametrize("source", REFUSED.values(), ids=REFUSED.keys())
def test_a_template_outside_the_sandbox_is_refused(source):
    with pytest.raises(ValueError, match="template error"):
        templating.check(source)


def test_the_default_templates_and_ordinary_formatting_pass():
    for title, body in templating.DEFAULTS.values():
        templating.check(title)
        templating.check(body)
    source = ("{% for c in container %}{{ forloop.counter }}{{ c|upper }}{% endfor %} {% with n=host|length %}{{ n }}{% endwith %} "
              "{{ value|floatformat:2 }} {{ exit_code|default_if_none:'-' }} {% if exit_code is not None %}x{% endif %} "
              "{% firstof error message 'none' %}{{ occurrences|pluralize:'y,ies' }}")
    templating.check(source)
    text = templating.render(source, {"container": "ab", "host": "hh", "value": 1.2345, "exit_code": None, "error": "",
                                      "message": "m", "occurrences": 2})
    assert text == "1A2B 2 1.23 -  mies"  # the if renders nothing between its two spaces


def test_a_huge_output_is_cut_with_a_marker():
    """GIVEN a valid template whose loop repeats a long message
    WHEN it renders
    THEN the text stops at the cap and says it was cut."""
    source = "{% for c in message %}{{ message }}{% endfor %}"
    templating.check(source)
    text = templating.render(source, {"message": "y" * 900})
    assert len(text) <= template_sandbox.MAX_OUTPUT + 100
    assert text.startswith("y" * 1000)
    assert text.endswith(template_sandbox.TRUNCATED.format(limit=template_sandbox.MAX_OUTPUT))


def test_nested_loops_stop_at_the_iteration_budget():
    source = "{% for a in message %}{% for b in message %}{% for c in message %}x{% endfor %}{% endfor %}{% endfor %}"
    templating.check(source)
    text = templating.render(source, {"message": "m" * 500})  # 125 million iterations unbounded
    assert text.startswith("[template error: loops ran more than")
    assert "x" not in text


def test_a_long_template_source_is_refused():
    with pytest.raises(ValueError, match="at most"):
        templating.check("x" * (template_sandbox.MAX_SOURCE + 1))


def test_values_reach_the_template_as_text_only():
    """Context values that are not text or numbers (a model, a dict) are rendered as their
    text: a template gets no object to walk."""
    from django.conf import settings

    text = templating.render("{{ error }}|{{ message|length }}", {"error": settings, "message": {"a": 1, "b": 2}})
    assert text.startswith("<") or "Settings" in text or "LazySettings" in text
    assert text.split("|")[1] == str(len(str({"a": 1, "b": 2})))


@pytest.mark.django_db
def test_a_stored_template_that_the_sandbox_refuses_renders_an_error_note(rows):
    """GIVEN a rule whose templates were stored before the sandbox (straight in the database)
    WHEN its alert fires
    THEN the alert's texts say the template was refused; nothing of the process leaks."""
    from alerts.models import Alert

    rule = make_rule("container_stopped")
    AlertRule.objects.filter(pk=rule.pk).update(title_template="{% debug %}", body_template="{{ container.upper }}")
    from alerts import evaluator
    from containers.models import Event

    event = Event.objects.create(category="container", type="container.state", host=rows.host, container_key=rows.container.key,
                                 data={"state": "exited", "previous_state": "running", "exit_code": 1})
    evaluator.evaluate_event(event.pk)
    alert = Alert.objects.get(rule=rule)
    assert alert.title.startswith("[template error:") and "debug" in alert.title
    assert alert.message.startswith("[template error:") and "no attributes" in alert.message
    assert "sys.modules" not in alert.title + alert.message and "SECRET_KEY" not in alert.title + alert.message


@pytest.mark.django_db
def test_an_invalid_template_is_a_400_field_error_through_the_api(admin):
    client = APIClient()
    client.force_authenticate(admin)
    body = {"name": "tpl", "kind": "container_stopped", "title_template": "{% load static %}", "body_template": "{{ host.lower }}"}
    response = client.post("/api/v1/alert-rules/", body, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert "title_template" in errors and "body_template" in errors
    assert not AlertRule.objects.filter(name="tpl").exists()
    body.update(title_template="{{ container|upper }} down", body_template="{{ host }}")
    assert client.post("/api/v1/alert-rules/", body, format="json").status_code == 201


@pytest.mark.django_db
def test_an_invalid_template_is_refused_by_the_admin_form(admin, client):
    client.force_login(admin)
    response = client.post("/admin/alerts/alertrule/add/", {
        "name": "adm-tpl", "kind": "container_stopped", "scope": "all", "threshold_unit": "percent", "duration_seconds": 0,
        "occurrences": 1, "window_seconds": 0, "cooldown_seconds": 300, "severity": "warning", "title_template": "{% debug %}",
        "body_template": "", "enabled": "on",
    })
    assert response.status_code == 200  # the form again, with the error
    assert "template error" in response.content.decode()
    assert not AlertRule.objects.filter(name="adm-tpl").exists()
