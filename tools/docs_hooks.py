"""MkDocs hooks: the figures of the site are drawn by the project's code at build time.

A figure committed as a file would go stale as the library changes; these are produced
by running the example that draws them, on every build, and added to the site as
generated files (nothing is written into docs/).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]

#: Site path of each figure: the command that draws it (``{output}``: where to write).
FIGURES = {
    "assets/learning_curves.png": [
        "examples/plot_learning_curves.py",
        "--verbose",
        "0",
        "--output",
        "{output}",
    ],
    "assets/schedules.png": ["examples/plot_schedules.py", "--output", "{output}"],
    "assets/transformer_attention.png": [
        "examples/transformer_digits.py",
        "--verbose",
        "0",
        "--attention",
        "{output}",
    ],
}


def _draw(command: list[str], output: Path) -> bytes:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("MPNN_BACKEND", None)  # the figures show a CPU run
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    arguments = [part.replace("{output}", str(output)) for part in command]
    result = subprocess.run(
        [sys.executable, *arguments], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode != 0 or not output.is_file():
        raise PluginError(f"drawing {output.name} failed:\n{result.stdout}\n{result.stderr}")
    return output.read_bytes()


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add every figure of `FIGURES`, freshly drawn, to the site's files."""
    with tempfile.TemporaryDirectory() as folder:
        for name, command in FIGURES.items():
            content = _draw(command, Path(folder) / Path(name).name)
            files.append(File.generated(config, name, content=content))
    return files
