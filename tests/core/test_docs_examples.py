"""The code examples in the docs run (so they cannot rot)."""

import re
from pathlib import Path

from setforge.testing import check_component

DOCS = Path(__file__).resolve().parents[2] / "docs"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_ten_line_augmenter_in_the_plugin_guide_conforms():
    block = next(b for b in python_blocks(DOCS / "plugins.md") if "class Invert" in b)
    assert len([line for line in block.splitlines() if line.strip()]) <= 12
    namespace: dict = {}
    exec(compile(block, "docs/plugins.md", "exec"), namespace)
    check_component(namespace["Invert"])
    assert namespace["setforge_register_augmenters"]() == [namespace["Invert"]]


def test_the_readme_run_file_validates(tmp_path, capsys):
    from setforge.tools.cli import main

    readme = (DOCS.parent / "README.md").read_text()
    block = re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)[0]
    path = tmp_path / "digits.yaml"
    path.write_text(block)
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    (tmp_path / "invert.py").write_text(next(b for b in python_blocks(DOCS.parent / "README.md") if "Invert" in b))
    path.write_text(block + "plugins: [invert.py]\n")
    assert main(["validate", str(path), "--set", "pipeline[0].augment[0]=invert-colours"]) == 0, \
        capsys.readouterr().err
