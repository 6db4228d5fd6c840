"""The tree's layout rules, checked on the source: the library never imports the jobs, and no
function of the library, the jobs or the command line is longer than 60 lines."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60


def _sources(*folders: str) -> list[Path]:
    files = []
    for folder in folders:
        path = REPO / folder
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def _imported_modules(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_library_does_not_import_pipelines_or_cli():
    bad = []
    for path in _sources("avatar"):
        for name in _imported_modules(ast.parse(path.read_text(encoding="utf-8"))):
            if name.split(".")[0] in ("pipelines", "cli", "tests", "bench"):
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    assert not bad, bad


def test_layout_checks_see_an_import_of_pipelines():
    tree = ast.parse("def f():\n    from pipelines.say import run\n")
    assert "pipelines.say" in _imported_modules(tree)


def test_every_package_is_in_the_wheel():
    """pyproject.toml lists the packages (it maps checkpoints/ into the wheel as
    avatar.checkpoints, which rules out automatic discovery): a new subpackage must be listed."""
    import tomllib
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for folder in ("avatar", "pipelines")
             for p in (REPO / folder).rglob("__init__.py")}
    assert found <= listed, f"add to pyproject.toml packages: {sorted(found - listed)}"
    assert "avatar.checkpoints" in listed


def _long_functions(tree: ast.AST, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    return [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > limit]


def test_no_function_is_longer_than_60_lines():
    long = [f"{path.relative_to(REPO)}: {name} ({n} lines)"
            for path in _sources("avatar", "pipelines", "cli.py")
            for name, n in _long_functions(ast.parse(path.read_text(encoding="utf-8")))]
    assert not long, f"split these functions (at most {MAX_FUNCTION_LINES} lines): {long}"


def test_the_length_check_counts_lines():
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    assert _long_functions(ast.parse(f"def f():\n{body}\n")) == [("f", 61)]
    assert _long_functions(ast.parse(f"def f():\n{body[:body.rindex(chr(10))]}\n")) == []
