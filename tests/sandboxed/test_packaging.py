"""A plain (non-editable) pip install carries the modules and points Salt's loader at them."""

import filecmp
import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_wheel_install_exposes_the_module_folders(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(REPO)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    probe = "import json, patroni_debian_loader as loader; print(json.dumps(loader.get_loader_dirs()))"
    dirs = json.loads(
        subprocess.run([python, "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    )
    module_dir = pathlib.Path(dirs["modules"][0])
    assert str(module_dir).startswith(str(venv)), "the loader must use the installed copy, not the checkout"
    assert filecmp.cmp(module_dir / "patroni_debian.py", REPO / "_modules" / "patroni_debian.py", shallow=False)
