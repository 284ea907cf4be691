"""The suite's own layout: pytest can collect every test module, whatever runs first."""

from __future__ import annotations

from collections import defaultdict

from app.config import PROJECT_ROOT
from tests.support import xdist_groups


def test_test_modules_outside_packages_have_names_of_their_own() -> None:
    # Without an __init__.py, pytest imports a test module by its basename: two
    # tests/*/test_x.py files collide, and the second one fails to collect.
    tests = PROJECT_ROOT / "tests"
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in tests.rglob("test_*.py"):
        if not (path.parent / "__init__.py").exists():
            by_name[path.name].append(str(path.relative_to(tests)))
    assert {name: paths for name, paths in by_name.items() if len(paths) > 1} == {}


def test_the_xdist_groups_name_modules_that_exist() -> None:
    # A renamed module would silently leave its group and run beside the others.
    named = xdist_groups.SERIAL_MODULES | xdist_groups.STACK_MODULES
    assert {module for module in named if not (PROJECT_ROOT / module).is_file()} == set()
