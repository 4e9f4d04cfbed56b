"""The documentation pages run as written, and show what their code prints.

Convention, for every Markdown page under docs/ except docs/api/ (the API reference
is generated from docstrings):

- Every ```python fenced block is executed; the blocks of a page run in page order
  in one namespace, in a temporary working directory, with ``MPLBACKEND=Agg``.
  Pages set their own seeds (``mpneuralnetwork.set_seed(...)``).
- A python block preceded by the line ``<!-- docs-test: skip (reason) -->`` is not
  run (the reason is required).
- A ```text block preceded by the line ``<!-- docs-test: output -->`` must equal what
  the python block before it printed, trailing whitespace ignored.
- A line ``--8<-- "path"`` inside a block (pymdownx.snippets) stands for that file of
  the repository, as on the built site.

Fences may be indented (inside admonitions); the marker goes on the line right above
the fence, with any indentation.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import io
import os
import pkgutil
import re
import sys
import tokenize
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

import mpneuralnetwork

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*)$")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<body>.*?)\s*-->\s*$")
_SKIP = re.compile(r"^skip\s*\((?P<reason>[^)]*\S[^)]*)\)$")
_SNIPPET = re.compile(r'^(?P<indent>\s*)--8<--\s+"(?P<path>[^"]+)"\s*$')


@dataclass
class Block:
    """One fenced block of a page."""

    language: str
    code: str
    line: int  # 1-based line of the first line of code on the page
    skip: str | None = None  # the reason, for a skipped python block
    output: bool = False  # a text block to compare with the printed output
    includes: bool = False  # holds a file of the repository (a snippet line)


def documented_pages(docs: Path = DOCS) -> list[Path]:
    """Every Markdown page of the site outside the generated API reference."""
    api = docs / "api"
    return sorted(p for p in docs.rglob("*.md") if api not in p.parents)


def _expand_snippets(code: str, page: Path, root: Path) -> str:
    lines = []
    for line in code.splitlines():
        match = _SNIPPET.match(line)
        if match is None:
            lines.append(line)
            continue
        target = root / match["path"]
        if not target.is_file():
            raise ValueError(f"{page}: snippet {match['path']!r} is not a file of the repository")
        lines.extend(target.read_text(encoding="utf-8").splitlines())
    return "\n".join(lines) + "\n"


def parse_page(page: Path, root: Path = ROOT) -> list[Block]:
    """The fenced blocks of ``page``, with their docs-test markers.

    Raises:
        ValueError: A marker is malformed or stands before a block it cannot apply to,
            or a fence is never closed.
    """
    lines = page.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):  # a marker apart from its fence would be ignored
        if _MARKER.match(line) and not (
            number + 1 < len(lines) and _FENCE.match(lines[number + 1])
        ):
            raise ValueError(
                f"{page}:{number + 1}: a docs-test marker must stand right above a fence"
            )
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        words = opening["info"].strip().lstrip(".").split()
        language = words[0].lower() if words else ""
        end = i + 1
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        if end == len(lines):
            raise ValueError(f"{page}:{i + 1}: the fence opened here is never closed")
        body = [
            line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : end]
        ]
        block = Block(language, "\n".join(body) + "\n", i + 2)
        marker = _MARKER.match(lines[i - 1]) if i > 0 else None
        if marker is not None:
            _apply_marker(block, marker["body"], f"{page}:{i}")
        if language == "python":
            expanded = _expand_snippets(block.code, page, root)
            block.includes, block.code = expanded != block.code, expanded
        blocks.append(block)
        i = end + 1
    return blocks


def _apply_marker(block: Block, body: str, where: str) -> None:
    skip = _SKIP.match(body)
    if skip is not None:
        if block.language != "python":
            raise ValueError(f"{where}: a skip marker must stand before a python block")
        block.skip = skip["reason"].strip()
    elif body == "output":
        if block.language != "text":
            raise ValueError(f"{where}: an output marker must stand before a text block")
        block.output = True
    else:
        raise ValueError(
            f"{where}: unknown marker <!-- docs-test: {body} -->; use 'skip (reason)' or 'output'"
        )


def _normalized(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def run_page(page: Path, workdir: Path, root: Path = ROOT) -> int:
    """Run the python blocks of ``page`` in ``workdir``; check its output blocks.

    Returns:
        The number of python blocks run.

    Raises:
        AssertionError: An output block differs from what its python block printed.
        Exception: Whatever a block raised (its traceback names the page and line).
    """
    blocks = parse_page(page, root)
    module = types.ModuleType("docs_page_" + re.sub(r"\W", "_", page.stem))
    module.__file__ = str(page)
    printed: str | None = None
    previous: Block | None = None
    ran = 0
    saved_cwd, saved_env = os.getcwd(), dict(os.environ)
    sys.modules[module.__name__] = module
    try:
        os.chdir(workdir)
        os.environ["MPLBACKEND"] = "Agg"
        if "matplotlib" in sys.modules:
            sys.modules["matplotlib"].use("Agg")
        for block in blocks:
            if block.language == "python":
                previous = block
                if block.skip is not None:
                    printed = None
                    continue
                # Padding keeps the page's line numbers in tracebacks.
                code = compile("\n" * (block.line - 1) + block.code, str(page), "exec")
                buffer = io.StringIO()
                with contextlib.redirect_stdout(buffer):
                    exec(code, module.__dict__)
                printed, ran = buffer.getvalue(), ran + 1
            elif block.output:
                where = f"{page.relative_to(root)}:{block.line - 1}"
                assert previous is not None, f"{where}: an output block before any python block"
                assert printed is not None, f"{where}: the python block before it is skipped"
                expected, actual = _normalized(block.code), _normalized(printed)
                if expected != actual:
                    diff = "\n".join(
                        difflib.unified_diff(
                            expected, actual, "shown on the page", "printed", lineterm=""
                        )
                    )
                    raise AssertionError(
                        f"{where}: the output shown differs from what the block at line "
                        f"{previous.line} prints:\n{diff}"
                    )
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.modules.pop(module.__name__, None)
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")
    return ran


# ------------------------------------------------------------------- the pages
PAGES = documented_pages()


@pytest.mark.skipif(
    mpneuralnetwork.xp.__name__ != "numpy",
    reason="the pages are written for the NumPy backend: they show its outputs (the "
    "backend's name, numbers drawn from NumPy's generator) and call NumPy functions on the "
    "arrays they get back, which CuPy refuses; the rest of the suite covers their library "
    "code on CuPy",
)
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_page(page: Path, tmp_path: Path) -> None:
    pytest.importorskip("sklearn", reason="the pages load scikit-learn data sets")
    pytest.importorskip("matplotlib", reason="the pages draw learning curves")
    run_page(page, tmp_path)


def test_every_page_outside_the_api_reference_is_collected() -> None:
    names = {str(p.relative_to(DOCS)) for p in PAGES}
    assert {"index.md", "guide/installation.md", "tutorials/mlp.md"} <= names
    assert not any(name.startswith("api/") for name in names)
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    every_page = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    for name in every_page:  # a page missing from the nav would be built but never found
        assert f" {name}\n" in nav, f"docs/{name} is not in the nav of mkdocs.yml"


def test_the_guide_tutorial_and_home_pages_run_every_block() -> None:
    for page in PAGES:
        relative = page.relative_to(DOCS)
        if relative.parts[0] in ("guide", "tutorials") or relative == Path("index.md"):
            skipped = [b.line for b in parse_page(page) if b.skip is not None]
            assert skipped == [], f"docs/{relative}: skipped blocks at lines {skipped}"


# -------------------------------------------------------------- the examples
#: Modules of the package that users do not import: what they export is re-exported
#: elsewhere or used by the library itself.
INTERNAL_MODULES = {
    "mpneuralnetwork.archive": "save_model, re-exported by mpneuralnetwork.serialization",
    "mpneuralnetwork.weights": "re-exported by serialization, and the checkpoints' Snapshot",
    "mpneuralnetwork.training": "the loop behind Model.train",
    "mpneuralnetwork.progress": "the printing behind train(verbose=...)",
}


def _exported() -> dict[str, object]:
    """Every name a public module exports (its ``__all__``), by import path, with its object."""
    exported: dict[str, object] = {}
    modules = [mpneuralnetwork.__name__] + [
        info.name
        for info in pkgutil.walk_packages(mpneuralnetwork.__path__, "mpneuralnetwork.")
        if not any(part.startswith("_") for part in info.name.split("."))
        and info.name not in INTERNAL_MODULES
    ]
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            if not name.startswith("__"):
                exported[f"{module_name}.{name}"] = getattr(module, name)
    return exported


def _names_used(code: str) -> set[str]:
    """The identifiers ``code`` uses outside import statements and comments."""
    used: set[str] = set()
    statement: list[str] = []
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type == tokenize.NAME:
            statement.append(token.string)
        elif token.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
            if statement and statement[0] not in ("import", "from"):
                used.update(statement)
            statement = []
    return used


def test_every_public_class_and_function_has_a_runnable_example() -> None:
    used: set[str] = set()
    for page in PAGES:
        for block in parse_page(page):
            if block.language == "python" and block.skip is None and not block.includes:
                used |= _names_used(block.code)
    missing = sorted(
        path
        for path, value in _exported().items()
        if isinstance(value, (type, types.FunctionType))
        and value.__module__.startswith("mpneuralnetwork")
        and path.rsplit(".", 1)[1] not in used
    )
    assert missing == [], f"no executed docs example uses {missing}"


# ----------------------------------------------------------- the collector itself
def _page(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "page.md"
    page.write_text(text, encoding="utf-8")
    return page


def test_blocks_share_a_namespace_and_outputs_are_compared(tmp_path: Path) -> None:
    page = _page(
        tmp_path,
        "```python\nx = 2\n```\n\n```python\nprint(x * 21)   \n```\n\n"
        "<!-- docs-test: output -->\n```text\n42\n```\n",
    )
    assert run_page(page, tmp_path, tmp_path) == 2
    wrong = _page(
        tmp_path, "```python\nprint(41)\n```\n<!-- docs-test: output -->\n```text\n42\n```\n"
    )
    with pytest.raises(AssertionError, match=r"-42\n\+41"):
        run_page(wrong, tmp_path, tmp_path)


def test_skip_marker_and_errors_name_the_page_line(tmp_path: Path) -> None:
    page = _page(
        tmp_path,
        "<!-- docs-test: skip (needs a GPU) -->\n```python\nraise SystemExit\n```\n\n"
        "    ```python\n    1 / 0\n    ```\n",
    )
    blocks = parse_page(page, tmp_path)
    assert [b.skip for b in blocks] == ["needs a GPU", None]
    with pytest.raises(ZeroDivisionError) as error:
        run_page(page, tmp_path, tmp_path)
    assert error.traceback[-1].lineno + 1 == 7  # "1 / 0" is on line 7 of the page
    assert Path(error.traceback[-1].path) == page


@pytest.mark.parametrize(
    "text",
    [
        "<!-- docs-test: skip -->\n```python\npass\n```\n",  # no reason
        "<!-- docs-test: skip (why) -->\n```text\nx\n```\n",
        "<!-- docs-test: output -->\n```python\npass\n```\n",
        "<!-- docs-test: outptu -->\n```text\nx\n```\n",
        "```python\npass\n",
        "<!-- docs-test: output -->\n\n```text\nx\n```\n",  # not right above the fence
    ],
)
def test_malformed_markers_are_errors(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValueError):
        parse_page(_page(tmp_path, text), tmp_path)


def test_snippets_expand_and_the_environment_is_restored(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text("import os\nos.environ['MPNN_DOCS_TEST'] = '1'\n")
    page = _page(tmp_path, '```python\n--8<-- "script.py"\nprint(os.getcwd())\n```\n')
    workdir = tmp_path / "work"
    workdir.mkdir()
    before = os.getcwd()
    run_page(page, workdir, tmp_path)
    assert "MPNN_DOCS_TEST" not in os.environ and os.getcwd() == before


# ------------------------------------------------------------- the API pages
#: Documented constants that no ``__all__`` lists (they are read as module attributes).
API_CONSTANTS = {"mpneuralnetwork.optimizers.BLOCK", "mpneuralnetwork.model.INFERENCE_CHUNK"}


def _api_directives() -> dict[str, str]:
    """``{import path: page}`` of every ``::: path`` directive of docs/api."""
    found = {}
    for page in sorted((DOCS / "api").glob("*.md")):
        for path in re.findall(r"^::: (\S+)", page.read_text(encoding="utf-8"), re.M):
            found[path] = page.name
    return found


def test_the_api_reference_documents_every_export_by_its_import_path() -> None:
    directives = _api_directives()
    exported = _exported()
    documented = {id(exported[path]) for path in directives if path in exported}
    missing = sorted(path for path, value in exported.items() if id(value) not in documented)
    assert missing == [], f"no ::: directive in docs/api documents {missing}"
    # One directive per object, at a path users import from: never a whole module
    # (which would render its private helpers) nor a file-internal path.
    unknown = sorted(
        path
        for path in set(directives) - set(exported) - API_CONSTANTS
        if not any(path == m or path.startswith(m + ".") for m in INTERNAL_MODULES)
    )
    assert unknown == [], f"docs/api documents {unknown}, which no public module exports"
    assert "model.md" in {directives["mpneuralnetwork.model.Model"]}


def test_the_api_reference_shows_no_private_base_class() -> None:
    exported = _exported()
    for page in sorted((DOCS / "api").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"^::: (\S+)\n((?:    .*\n)*)", text, re.M):
            value = exported.get(match[1])
            private = [b.__name__ for b in getattr(value, "__bases__", ()) if b.__name__[0] == "_"]
            if private:
                assert "show_bases: false" in match[2], (
                    f"api/{page.name}: {match[1]} shows {private}"
                )


# ------------------------------------------------------------ install commands
_PIP = re.compile(r"\bpip install\b(?P<args>[^#\n]*)")


def _pip_commands() -> list[tuple[str, str, str]]:
    """``(where, heading, arguments)`` of every ``pip install`` in the docs and the README."""
    found = []
    for page in [*documented_pages(), ROOT / "README.md"]:
        heading = ""
        blocks = {b.line - 1: b for b in parse_page(page) if b.language in ("bash", "sh", "")}
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if line.startswith("#"):
                heading = line
            block = blocks.get(number)
            if block is not None:
                for command in _PIP.finditer(block.code):
                    found.append((f"{page.relative_to(ROOT)}:{number}", heading, command["args"]))
    return found


def test_install_commands_work_from_this_source_tree() -> None:
    tomllib = pytest.importorskip("tomllib")
    extras = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )
    commands = _pip_commands()
    assert len(commands) >= 5
    for where, heading, arguments in commands:
        for group in re.findall(r"\[([\w,-]+)\]", arguments):
            unknown = set(group.split(",")) - extras
            assert not unknown, f"{where}: no extra {unknown} in pyproject.toml"
        # "mpneuralnetwork" as a requirement (not a path such as dist/mpneuralnetwork-...whl)
        # comes from the package index, which holds 1.1.1 until 1.2 is published.
        from_index = re.search(r"(?<![\w/.-])[\"']?mpneuralnetwork(\[|[\"']|\s|$)", arguments)
        if from_index:
            assert "published" in heading, f"{where}: {arguments.strip()} installs 1.1.1 today"


def test_the_package_tree_of_the_internals_page_lists_every_module() -> None:
    page = DOCS / "internals" / "index.md"
    (tree,) = [block.code for block in parse_page(page) if "├──" in block.code]
    listed = set(re.findall(r"(\w+\.py)\b", tree))
    files = {p.name for p in (ROOT / "src" / "mpneuralnetwork").rglob("*.py")}
    assert files <= listed, f"docs/internals/index.md: the package tree lacks {files - listed}"
    assert listed <= files, f"docs/internals/index.md lists missing files {listed - files}"
