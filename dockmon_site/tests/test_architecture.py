"""The import contract of ARCHITECTURE.md, checked on the source: which package may import which.

Every import counts, also one inside a function (a lazy import is still a dependency) and one
under `if TYPE_CHECKING:`. Tests, migrations, `testkit/` and `bench/` are not product code and are
not checked; the product must not import them either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Higher layers may import lower ones; apps on the same layer never import each other.
LAYERS = {
    "dockmon_site": 0,  # the base: settings helpers, crypto, outbound policy, API base pieces...
    "accounts": 1,
    "containers": 2,
    "updates": 3,
    "healthchecks": 3,
    "alerts": 3,
    "stacks": 3,
}
# The project's wiring sits above every app: it puts them together and may import any of them.
WIRING = {"dockmon_site.settings", "dockmon_site.urls", "dockmon_site.routing", "dockmon_site.asgi", "dockmon_site.wsgi"}
WIRING_LAYER = 9
NOT_PRODUCT = {"testkit", "bench", "conftest"}
MAX_LINES = 600


def product_files(root: Path = ROOT) -> list[Path]:
    files = []
    for package in LAYERS:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).parts
            if "tests" in parts or "migrations" in parts:
                continue
            files.append(path)
    return files


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    if module in WIRING or any(module.startswith(w + ".") for w in WIRING):
        return WIRING_LAYER
    return LAYERS.get(module.split(".")[0])


def imported_modules(source: str, module: str) -> list[tuple[int, str]]:
    """(line, imported module) of every import statement in the source, relative ones resolved."""
    found = []
    package = module.split(".")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level] + ([base] if base else []))
            found.append((node.lineno, base))
    return found


def violations(module: str, source: str) -> list[str]:
    """What breaks the contract in one module's source: an import of a higher layer, of another
    app on the same layer, or of test code."""
    own_top = module.split(".")[0]
    own_layer = layer_of(module)
    problems = []
    for line, target in imported_modules(source, module):
        top = target.split(".")[0]
        if top in NOT_PRODUCT:
            problems.append(f"{module}:{line} imports {target} (test or benchmark code)")
            continue
        target_layer = layer_of(target)
        if target_layer is None or top == own_top and target_layer != WIRING_LAYER:
            continue
        if target_layer > own_layer or (target_layer == own_layer and top != own_top):
            problems.append(f"{module}:{line} imports {target}")
    return problems


def test_every_import_follows_the_layers():
    problems = []
    for path in product_files():
        problems.extend(violations(module_name(path), path.read_text()))
    assert not problems, "imports against ARCHITECTURE.md:\n" + "\n".join(problems)


@pytest.mark.parametrize(("module", "source"), [
    ("containers.views", "from updates.models import ContainerUpdate\n"),
    ("containers.views", "def f():\n    from alerts.models import Alert\n"),
    ("containers.api.views", "from ...healthchecks import probe\n"),
    ("accounts.grants", "import containers.models\n"),
    ("dockmon_site.bus", "from containers.models import Event\n"),
    ("dockmon_site.permissions", "from dockmon_site.urls import urlpatterns\n"),
    ("updates.executor", "from healthchecks.probe import run_probe\n"),
    ("alerts.notify", "from testkit import testing\n"),
])
def test_the_check_catches_a_forbidden_import(module, source):
    assert violations(module, source)


@pytest.mark.parametrize(("module", "source"), [
    ("containers.views", "from accounts import audit\nfrom dockmon_site import crypto\nfrom containers.models import Container\n"),
    ("updates.executor", "from containers.models import Container\n"),
    ("dockmon_site.urls", "from alerts import views\nfrom updates import views\n"),
    ("containers.api.views", "from ..models import Container\n"),
])
def test_the_check_lets_allowed_imports_pass(module, source):
    assert violations(module, source) == []


def test_no_product_module_is_over_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in product_files() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
