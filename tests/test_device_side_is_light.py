"""The device side never imports TensorFlow, Keras, tf2onnx, export or bench, and the import
graph has one direction: export -> compressor <- bench, with no cycle."""

import ast
from pathlib import Path

from tests.support import HEAVY, ROOT, imported_after, mnist5k_test, to_uint8


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph(packages=("compressor", "export", "bench")) -> dict[str, set[str]]:
    """module -> the project modules it imports anywhere in its source (lazily or not)."""
    modules = {_module_name(p): p for pkg in packages for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                subs = [f"{node.module}.{a.name}" for a in node.names]
                targets = [t for t in subs if t in modules] or [node.module]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args:
                if isinstance(node.args[0], ast.Constant):
                    targets = [node.args[0].value]
            deps |= {t for t in targets if t in modules}
        if name == "compressor.cli":  # command modules registered by name
            deps |= {m for m in modules if m.endswith(".cli") and m.startswith("compressor.") and m != name}
        graph[name] = deps - {name}
    return graph


def test_nothing_in_compressor_imports_export_or_bench_even_lazily():
    upward = {
        (m, d)
        for m, deps in _import_graph().items()
        if m.startswith("compressor")
        for d in deps
        if d.split(".")[0] in ("export", "bench")
    }
    assert not upward


def test_the_import_graph_has_no_cycle():
    graph = _import_graph()
    seen, on_path = set(), []

    def visit(node):
        if node in on_path:
            raise AssertionError("import cycle: " + " -> ".join(on_path[on_path.index(node) :] + [node]))
        if node in seen:
            return
        on_path.append(node)
        for dep in sorted(graph.get(node, ())):
            visit(dep)
        on_path.pop()
        seen.add(node)

    for node in sorted(graph):
        visit(node)


def test_no_module_imports_a_private_name_of_another():
    private = []
    for path in ROOT.joinpath("compressor").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("compressor"):
                private += [
                    f"{path.name}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert not private


def test_importing_every_device_module_leaves_tensorflow_export_and_bench_out():
    modules = sorted(m for m in _import_graph(("compressor",)) if m != "compressor")
    stmt = "\n".join(f"import {m}" for m in modules)
    assert not imported_after(stmt) & set(HEAVY)


def test_cli_help_starts_without_tensorflow():
    assert not imported_after(
        "import compressor.cli as c\ntry:\n    c.main(['--help'])\nexcept SystemExit:\n    pass"
    ) & set(HEAVY)


def test_the_edge_environment_has_no_tensorflow_installed_and_still_decodes(bundle_dir, tmp_path):
    import json

    import numpy as np

    import compressor
    from export import isolation

    images = to_uint8(mnist5k_test(20))
    np.save(tmp_path / "x.npy", images)
    codes = tmp_path / "codes.bin"
    codes.write_bytes(compressor.Encoder.load(bundle_dir).compress_stream(images, joint=True))
    site = isolation.build_edge_site(tmp_path / "site")
    proc = isolation.run_in_edge_site(
        site, "bench.decode_check", str(codes), str(bundle_dir / "decoder"), str(tmp_path / "x.npy")
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["tensorflow_installed"] is False and report["images"] == 20
    assert report["pixel_error_%"] < 10


def test_test_modules_share_helpers_through_tests_support_only():
    """No test module imports another test module or conftest.py: one home per helper, and a test
    file can be run alone. Fixtures come from conftest.py by name, helpers from tests/support.py."""
    allowed = ("tests.support", "tests.aarch64")
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for name in names:
                if name == "tests" or name.startswith("tests."):
                    assert name.startswith(allowed), f"{path.name} imports {name}"
