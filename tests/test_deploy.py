"""The deploy path: what a Space gets, and the container's user, data folder and entry command.

No container engine runs on this machine (only the docker client is installed), so the image is not
built here; these tests check the pieces that decide whether it works on a Space.
"""

import re
import sys
from pathlib import Path

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
