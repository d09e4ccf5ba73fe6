"""The shape of the code, checked from its syntax: where rows are made, what modules may hold, the error tree,
module names, the stage table. (Import directions and cycles: `lint-imports`, run by `make lint`.)"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks import errors

REPO = Path(__file__).resolve().parent.parent
RUNTIME = ("tasks", "flows")


def modules(*packages: str) -> Iterator[tuple[str, ast.Module]]:
    for package in packages:
        for path in sorted((REPO / package).rglob("*.py")):
            yield str(path.relative_to(REPO)), ast.parse(path.read_text(), str(path))


def test_manifest_rows_are_made_in_one_module_and_never_changed() -> None:
    from tasks.shard.rows import ManifestRow

    assert ManifestRow.__dataclass_params__.frozen  # type: ignore[attr-defined]
    row_fields = {f for f in ManifestRow.__dataclass_fields__} - {"run_id", "text", "status", "error", "voice"}
    makers, patchers = set(), set()
    for name, tree in modules(*RUNTIME):
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if called in ("ManifestRow", "replace") and (called == "ManifestRow" or _names_a_row(node)):
                    makers.add(name)
                if called in ("setattr", "__setattr__") and node.args and _is_row_name(node.args[0]):
                    patchers.add(name)
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AugAssign | ast.AnnAssign)
                else []
            )
            for target in targets:
                for t in ast.walk(target):
                    if isinstance(t, ast.Attribute) and t.attr in row_fields and _is_row_name(t.value):
                        patchers.add(f"{name}:{t.lineno}")
    assert makers == {"tasks/shard/rows.py"}
    assert not patchers


def _is_row_name(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id in ("row", "r", "prior", "best_row", "stored", "template")


def _names_a_row(call: ast.Call) -> bool:
    return bool(call.args) and _is_row_name(call.args[0])


# Module-level mutable state that is allowed: process-wide caches and registries whose absence would change
# nothing but speed (a voice hashed or loaded again, a plan read again, a client made again), never run data
# handed from one layer to another.
ALLOWED_STATE = {
    "tasks/backends/registry.py": {"_RESOLVED", "_LOADED"},  # voices resolved (hashed) and loaded, by settings
    "tasks/audio/asr.py": {"_models"},  # Whisper models loaded
    "tasks/storage/s3_client.py": {"_clients"},  # one S3 client per configuration
    "tasks/storage/__init__.py": {"_FACTORIES"},  # store factories by URI scheme, filled at import
    "tasks/plan/store.py": {"_CACHE"},  # plans read or written, by store and run id (a plan never changes)
    "tasks/plan/file.py": {"_SPOOL"},  # this process's folder for plan files
    "tasks/shard/faults.py": {"_passed"},  # times each kill_after point was passed (rehearsals only)
}
_MUTATORS = {"append", "appendleft", "extend", "update", "pop", "popitem", "clear", "setdefault", "add", "discard",
             "remove", "insert", "move_to_end"}  # fmt: skip


def _mutates(func: ast.expr) -> bool:
    """`name.append(...)` and the like, on a plain name."""
    return isinstance(func, ast.Attribute) and func.attr in _MUTATORS and isinstance(func.value, ast.Name)


def test_no_module_holds_run_data_in_a_module_level_variable() -> None:
    """Module-level names may hold tables (filled once, at import), never state changed while the process runs,
    but for the caches and registries above."""
    changed: dict[str, set[str]] = {}
    for name, tree in modules(*RUNTIME):
        top = {
            t.id
            for node in tree.body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(t, ast.Name)
        }
        for node in ast.walk(tree):
            hits: set[str] = set()
            if isinstance(node, ast.Global):
                hits.update(node.names)
            elif isinstance(node, ast.Assign | ast.AugAssign | ast.Delete):
                targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
                hits.update(
                    t.value.id for t in targets if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name)
                )
            elif isinstance(node, ast.Call) and _mutates(node.func):
                hits.add(node.func.value.id)  # type: ignore[attr-defined]
            if hits & top:
                changed.setdefault(name, set()).update(hits & top)
    assert changed == ALLOWED_STATE


def test_no_assert_guards_runtime_behaviour() -> None:
    """`python -O` removes asserts: whatever the runtime relies on raises a real error."""
    found = [
        f"{name}:{node.lineno}"
        for name, tree in modules(*RUNTIME, "bench")
        for node in ast.walk(tree)
        if isinstance(node, ast.Assert)
    ]
    assert not found


def test_no_two_runtime_modules_share_a_name() -> None:
    names: dict[str, list[str]] = {}
    for package in RUNTIME:
        for path in (REPO / package).rglob("*.py"):
            if path.name != "__init__.py":
                names.setdefault(path.stem, []).append(str(path.relative_to(REPO)))
        for path in (REPO / package).rglob("*/"):
            if (path / "__init__.py").exists():
                names.setdefault(path.name, []).append(str(path.relative_to(REPO)) + "/")
    shared = {stem: paths for stem, paths in names.items() if len(paths) > 1}
    assert not shared


def test_the_error_tree_is_drawn_as_the_code_has_it() -> None:
    drawn = {}
    for line in (errors.__doc__ or "").splitlines():
        m = re.match(r"^[│├└─\s]*(\w+Error|\w+Incomplete|\w+Memory|\w+Fatal)\s+.*\(exit (\d)\)$", line)
        if m:
            drawn[m.group(1)] = int(m.group(2))
    classes = {
        name: cls
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.VoxbatchError) and cls.__module__ == errors.__name__
    }
    assert drawn == {name: cls.exit_code for name, cls in classes.items()}
    assert all(cls.__bases__ == (errors.VoxbatchError,) for name, cls in classes.items() if name != "VoxbatchError")
    # Raised anywhere else as voxbatch's own, not defined elsewhere
    for name, tree in modules(*RUNTIME):
        if name == "tasks/errors.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", "") == "VoxbatchError" for b in node.bases):
                pytest.fail(f"{name}: {node.name} derives from VoxbatchError outside tasks/errors.py")


def test_the_stage_table_names_every_folder_of_tasks() -> None:
    doc = (REPO / "docs" / "architecture.md").read_text()
    folders = sorted(p.name for p in (REPO / "tasks").iterdir() if (p / "__init__.py").exists())
    for folder in folders:
        assert f"`tasks/{folder}/`" in doc, folder
    for path in (REPO / "tasks").glob("*.py"):
        if path.name != "__init__.py":
            assert f"`{path.stem}`" in doc, path.name
    assert "docs/architecture.md" in (REPO / "README.md").read_text()


def test_test_files_share_helpers_not_each_other() -> None:
    for name, tree in modules("tests"):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not re.match(r"tests\.(test_|conftest)", node.module), f"{name} imports {node.module}"
