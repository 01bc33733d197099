"""The deploy path: what a Space gets, and the container's user, data folder and entry command.

No container engine runs on this machine (only the docker client is installed), so the image is not
built here; these tests check the pieces that decide whether it works on a Space.
"""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import deploy_space  # noqa: E402


def test_upload_plan_holds_the_tracked_weights_through_lfs_and_nothing_ignored():
    rows = {p: (size, lfs) for p, size, lfs in deploy_space.plan()}
    size, lfs = rows["assets/tiny-t2i/model.safetensors"]
    assert size > deploy_space.HUB_PLAIN_LIMIT and lfs
    assert "Dockerfile" in rows and "README.md" in rows and "app.py" in rows
    assert not any(p.startswith((".venv/", "runs/", "data/")) or p.endswith(".sqlite3") for p in rows)
    assert all(lfs for p, (size, lfs) in rows.items() if size > deploy_space.HUB_PLAIN_LIMIT)


def test_deploy_refuses_a_bad_space_name(capsys):
    assert deploy_space.main(["not-a-space"]) == 2
    assert "OWNER/NAME" in capsys.readouterr().err


def test_dockerfile_runs_as_uid_1000_with_its_own_data_folder_and_bounded_threads():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"useradd -m -u 1000 user", text)
    user_at = text.index("USER user")
    assert text.index("WORKDIR") > user_at, "WORKDIR before USER makes the app folder root-owned"
    assert "chown user:user /data" in text and "RLLI_DATA_DIR=/data" in text
    assert "OMP_NUM_THREADS=2" in text
    assert 'CMD ["python", "app.py"]' in text and "HEALTHCHECK" in text
    assert "ARG TORCH_VARIANT=cpu" in text and "--index-url" in text
    front = (ROOT / "README.md").read_text().split("---")[1]
    assert "sdk: docker" in front and "app_port: 7860" in front


def _traversable_by_others(path: Path) -> bool:
    """True when a user other than the owner can reach ``path`` (every folder above it has o+x)."""
    import stat

    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents])


def _tree(root: Path) -> set[str]:
    """Files in the repository, tracked or not, ignored or not, except Python's bytecode caches."""
    import subprocess

    out = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=root,
                         capture_output=True, text=True, check=True).stdout
    return {line for line in out.splitlines() if "__pycache__" not in line}


@pytest.mark.slow
def test_the_entry_command_serves_as_uid_1000_and_writes_only_its_data_folder(tmp_path):
    """What the container does: ``python app.py`` as user 1000, everything it writes under RLLI_DATA_DIR.

    As root (CI) the app runs as uid 1000 where the checkout is reachable by other users; otherwise as
    this user. Either way the health check must answer and nothing may appear in the repository.
    """
    import os
    import subprocess
    import time
    import urllib.request

    from tests.browser import free_port

    data = tmp_path / "data"
    data.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    as_uid_1000 = os.geteuid() == 0 and _traversable_by_others(ROOT) and _traversable_by_others(Path(sys.executable).resolve())
    if as_uid_1000:
        os.chown(data, 1000, 1000)
        os.chown(home, 1000, 1000)
        os.chmod(tmp_path, 0o755)
    port = free_port()
    env = {**os.environ, "RLLI_DATA_DIR": str(data), "RLLI_DATABASE_URL": f"sqlite:///{data / 'rlli.sqlite3'}",
           "RLLI_PORT": str(port), "RLLI_HOST": "127.0.0.1", "HOME": str(home), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    before = _tree(ROOT)
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, user=1000 if as_uid_1000 else None,
                            group=1000 if as_uid_1000 else None)
    try:
        deadline, status = time.monotonic() + 240, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    status = r.status
                    break
            except OSError:
                time.sleep(1)
        output = proc.stdout.read1().decode()[-3000:] if proc.poll() is not None else ""
        assert status == 200, f"no answer on the health check; app output:\n{output}"
    finally:
        proc.terminate()
        proc.wait(30)
    assert _tree(ROOT) == before, f"the app wrote into the repository: {_tree(ROOT) - before}"
    assert (data / "rlli.sqlite3").exists(), "the store must live in the data folder"
