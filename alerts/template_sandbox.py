"""The sandbox that rule templates (titles and messages of notifications) run in.

A template is written by whoever may edit an alert rule (the Operators role, administrators),
and rendered by DockMon's workers. It may format the documented variables and nothing else:

- Tags: an allowlist (if, for, with, firstof, cycle, ifchanged, now, spaceless, comment,
  verbatim, templatetag). No `load`, `include`, `extends`, `url`, `debug`, `csrf_token`,
  `lorem`, `widthratio`... (they are not registered: the parser refuses them).
- Filters: an allowlist of text and number filters; those whose argument sizes their output
  (floatformat, truncatechars, slice...) take a literal argument within limits.
- Variables: only the documented names and names the template binds itself (for, with, as),
  one level deep (`{{ container }}`, never `{{ container.upper }}` or `{{ x.__class__ }}`), and
  `forloop.counter` & co. So no attribute or method of any value is reached.
- Work and output: loops together run at most MAX_ITERATIONS times; the text is cut at
  MAX_OUTPUT characters with a marker; a template's source is at most MAX_SOURCE characters.

Everything is checked when a template is saved (`check()` → ValueError → a 400 field error) and
again before each render (a template stored before these rules renders as an error note).
"""

from __future__ import annotations

from django.template import Context, Engine, Library, Node, NodeList, TemplateSyntaxError, defaultfilters, defaulttags
from django.template.base import FilterExpression, Variable
from django.template.smartif import TokenBase

MAX_SOURCE = 10_000
MAX_OUTPUT = 10_000
MAX_ITERATIONS = 1_000
TRUNCATED = "… [cut: the template's output is over {limit} characters]"

ALLOWED_TAGS = ("if", "for", "with", "firstof", "cycle", "ifchanged", "now", "spaceless", "comment", "verbatim",
                "templatetag")
ALLOWED_FILTERS = (
    "add", "capfirst", "cut", "default", "default_if_none", "divisibleby", "filesizeformat", "first", "floatformat", "join",
    "last", "length", "lower", "make_list", "pluralize", "slice", "slugify", "striptags", "title", "truncatechars",
    "truncatewords", "upper", "urlencode", "wordcount", "wordwrap", "yesno",
)
# Filters whose argument decides how much work or text they make: a literal, within bounds.
_LITERAL_ARGS = {"floatformat": (-10, 10), "truncatechars": (0, MAX_OUTPUT), "truncatewords": (0, MAX_OUTPUT),
                 "wordwrap": (1, MAX_OUTPUT), "slice": None}
FORLOOP_KEYS = ("counter", "counter0", "revcounter", "revcounter0", "first", "last")

register = Library()
for _name in ALLOWED_FILTERS:
    register.filters[_name] = defaultfilters.register.filters[_name]
for _name in ALLOWED_TAGS:
    if _name != "for":
        register.tags[_name] = defaulttags.register.tags[_name]


class TemplateBudgetExceeded(Exception):
    pass


class _IterationBudget(Node):
    """The first node of every loop body: counts iterations across the whole render."""

    def render(self, context):
        spent = context.render_context.get("dockmon_iterations", 0) + 1
        if spent > MAX_ITERATIONS:
            raise TemplateBudgetExceeded(f"loops ran more than {MAX_ITERATIONS} times")
        context.render_context["dockmon_iterations"] = spent
        return ""


@register.tag("for")
def _for(parser, token):
    node = defaulttags.do_for(parser, token)
    node.nodelist_loop.insert(0, _IterationBudget())
    return node


class _Engine(Engine):
    # Only the sandbox's library: Django's default tags and filters are not all safe here.
    default_builtins = ["alerts.template_sandbox"]


engine = _Engine(autoescape=False, loaders=[], libraries={}, debug=False)


# ---------------------------------------------------------------------------
# Checking a compiled template
# ---------------------------------------------------------------------------
def _walk(value, seen: set):
    """Every node, filter expression and variable inside a compiled template."""
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, (NodeList, list, tuple)):
        for item in value:
            yield from _walk(item, seen)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _walk(item, seen)
    elif isinstance(value, (Node, TokenBase)):
        yield value
        for name, item in vars(value).items():
            if name not in ("token", "origin"):
                yield from _walk(item, seen)
    elif isinstance(value, FilterExpression):
        yield value
        yield from _walk(value.var, seen)
        for _func, args in value.filters:
            for _lookup, arg in args:
                yield from _walk(arg, seen)
    elif isinstance(value, Variable):
        yield value


def _bound_names(nodes) -> set[str]:
    names = set()
    for node in nodes:
        if isinstance(node, defaulttags.ForNode):
            names.update(node.loopvars)
        elif isinstance(node, defaulttags.WithNode):
            names.update(node.extra_context)
        for attr in ("asvar", "variable_name"):
            if isinstance(getattr(node, attr, None), str):
                names.add(getattr(node, attr))
    return names


def _check_filters(expression: FilterExpression) -> None:
    for func, args in expression.filters:
        name = getattr(func, "_filter_name", None) or func.__name__
        if name not in _LITERAL_ARGS:
            continue
        for _lookup, arg in args:
            # Strings come resolved; numbers as a Variable with a literal; names with lookups.
            if isinstance(arg, Variable) and arg.lookups is not None:
                raise ValueError(f"the argument of {name} must be a constant")
            literal = arg.literal if isinstance(arg, Variable) else arg
            bounds = _LITERAL_ARGS[name]
            if bounds is None:
                continue
            try:
                number = int(str(literal).rstrip("gu"))  # floatformat takes "2g", "-3u"
            except ValueError:
                raise ValueError(f"the argument of {name} must be a number") from None
            if not bounds[0] <= number <= bounds[1]:
                raise ValueError(f"the argument of {name} must be between {bounds[0]} and {bounds[1]}")


def compile_checked(source: str, names) -> object:
    """The compiled template, or ValueError saying what the sandbox refuses."""
    if len(source) > MAX_SOURCE:
        raise ValueError(f"a template is at most {MAX_SOURCE} characters")
    try:
        template = engine.from_string(source)
    except TemplateSyntaxError as exc:
        raise ValueError(str(exc)) from None
    items = list(_walk(template.nodelist, set()))
    allowed = set(names) | _bound_names(items) | {"True", "False", "None"}  # the Context's own constants
    for item in items:
        if isinstance(item, FilterExpression):
            _check_filters(item)
        elif isinstance(item, Variable) and item.lookups is not None:
            lookups = item.lookups
            if lookups[0] == "forloop":
                if len(lookups) != 2 or lookups[1] not in FORLOOP_KEYS:
                    raise ValueError(f"{item.var}: use forloop.{', forloop.'.join(FORLOOP_KEYS)}")
                continue
            if lookups[0] not in allowed:
                raise ValueError(f"unknown variable {lookups[0]!r} (see the documented variables)")
            if len(lookups) > 1:
                raise ValueError(f"{item.var}: variables have no attributes in notification templates")
    return template


def _plain(value):
    """A context value as text or a number: nothing with attributes worth reaching."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def render(source: str, context: dict, names) -> str:
    """Render within the sandbox; ValueError when the template is refused, TemplateBudgetExceeded
    when its loops run too long. The output is cut at MAX_OUTPUT with a marker."""
    template = compile_checked(source, names)
    values = {name: _plain(context.get(name)) for name in names}
    text = template.render(Context(values, autoescape=False))
    if len(text) > MAX_OUTPUT:
        text = text[:MAX_OUTPUT] + TRUNCATED.format(limit=MAX_OUTPUT)
    return text
