"""Train an allocation policy: G-DDPG (diffusion actor) or DDPG (MLP actor), same critics and budget.

Read top to bottom, as CleanRL writes an algorithm: arguments, seeding, the system model, networks,
the loop (sample rounds -> act with exploration noise -> reward -> replay buffer -> twin-critic
regression -> actor ascent on min(Q1, Q2) -> soft update of the deployed actor), evaluation on fixed
validation rounds, checkpoints and a CSV learning curve.

Each round is an episode of one step (a contextual bandit, as in GDMOPT): the allocation of one
round does not change the next round's channels, traits or prompts, so the critic's TD target is
the reward itself and no target critic is needed. The deployed actor is the Polyak average
(tau = 0.005) of the trained one: GDMOPT's soft target update.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from rlli.network.allocation import QoeFn, action_dim, action_for, evaluate
from rlli.network.params import SystemParams
from rlli.network.state import RoundState, encode, obs_dim, sample_states
from rlli.policy.actors import DiffusionActor, DoubleCritic, MLPActor
from rlli.policy.baselines import greedy
from rlli.policy.checkpoint import save_actor, save_critic
from rlli.policy.forks import training_curves

ROOT = Path(__file__).resolve().parents[2]  # not from rlli.config: training needs only numpy and torch
ASSETS = ROOT / "assets"
VALIDATION_SEED = 999_983  # validation rounds for the learning curve (held apart from training and eval)
# Same tuning effort for both: each algorithm ran 3e-4 and 1e-3 (actor and critic alike) for 1500 iterations on
# seed 0 and keeps the better on the validation rounds (G-DDPG 36.04 vs 35.22 at 900; DDPG 35.79 vs 35.26).
TUNED_LR = {"gddpg": 3e-4, "ddpg": 1e-3}
DEFAULT_QUERY_BUDGET = 144  # judge queries for --judge llm: the embedded SmolLM2 answered 144 in 9 min 20 s on 2 loaded cores


@dataclass
class Args:
    algo: str = "gddpg"
    """gddpg (diffusion actor) or ddpg (MLP actor)"""
    seed: int = 0
    """seeds python, numpy, torch and the round sampler"""
    iterations: int = 4000
    """loop iterations; each samples `rounds_per_iteration` new rounds and does one critic update"""
    rounds_per_iteration: int = 16
    learning_starts: int = 2048
    """rounds acted on uniformly at random before learning starts"""
    buffer_size: int = 100_000
    batch_size: int = 256
    actor_lr: float | None = None
    """default per algorithm (TUNED_LR): the better of 3e-4 and 1e-3 on 1500 iterations, seed 0"""
    critic_lr: float | None = None
    weight_decay: float = 1e-4
    """AdamW weight decay (GDMOPT)"""
    tau: float = 0.005
    """Polyak factor of the deployed (target) actor"""
    exploration_noise: float = 0.1
    """std of the Gaussian noise added to the actor's actions while collecting"""
    policy_frequency: int = 2
    """actor update every this many critic updates (both algorithms)"""
    denoise_steps: int = 5
    """G-DDPG: reverse diffusion steps of the actor (1 = the ablation without a chain)"""
    bc: float = 0.0
    """weight of behaviour cloning in the actor loss (0 = plain DDPG / G-DDPG): the actor loss becomes
    -Q / mean|Q| + bc * BC, BC = Diffusion-QL's noise-prediction loss (G-DDPG) or TD3+BC's squared error (DDPG)
    toward the better of the greedy heuristic's action and the action taken in the same round"""
    best_of: int = 1
    """candidates the deployed actor draws per decision, the critic keeps the best (recorded in the checkpoint;
    validation uses it too)"""
    obs_version: int = 2
    """observation layout (rlli.network.state.encode): 2 carries band, server speed, N, users, backlog, batteries"""
    hidden: int = 256
    reward_scale: float = 0.1
    advantage: bool = True
    """learn on the reward minus the no-sharing reward of the same round (a state-only baseline)"""
    residual: bool = False
    """the actor outputs a correction added to the greedy heuristic's action (residual policy learning)"""
    eval_every: int = 200
    eval_rounds: int = 256
    minutes: float = 10.0
    """wall-clock cap: training stops there (with a checkpoint) even if iterations remain"""
    threads: int = 1
    judge: str = "trait"
    """trait (parametric persona judge) or llm (the persona LLM judge through a reward model fitted on queries)"""
    query_budget: int | None = None
    """judge queries the reward model is fitted on (--judge llm: default DEFAULT_QUERY_BUDGET; --judge trait with a
    budget: the trait judge through the same reward-model pipeline, the control)"""
    reward_model: str = ""
    """a saved reward model (reward_model.json) to train on instead of asking a judge"""
    query_cache: str = ""
    """the judge-query cache (default runs/policy/judge-queries.json)"""
    init: str = ""
    """start actor and critic from this checkpoint folder (fine-tuning); its layout must match"""
    out: str = ""
    """checkpoint folder (default runs/policy/<algo>-s<seed>)"""
    progress: bool = True

    def __post_init__(self) -> None:
        if self.algo not in ("gddpg", "ddpg"):
            raise ValueError(f"--algo must be gddpg or ddpg, not {self.algo!r}")
        self.actor_lr = TUNED_LR[self.algo] if self.actor_lr is None else self.actor_lr
        self.critic_lr = TUNED_LR[self.algo] if self.critic_lr is None else self.critic_lr
        if self.obs_version not in (1, 2):
            raise ValueError(f"--obs-version must be 1 or 2, not {self.obs_version!r}")
        if not self.bc >= 0:
            raise ValueError("--bc must be >= 0")
        if self.judge not in ("trait", "llm"):
            raise ValueError(f"--judge must be trait or llm, not {self.judge!r}")
        if self.query_budget is not None and (isinstance(self.query_budget, bool) or int(self.query_budget) < 1):
            raise ValueError(f"--query-budget must be a positive number of judge queries, got {self.query_budget}")
        if self.judge == "llm" and self.query_budget is None and not self.reward_model:
            self.query_budget = DEFAULT_QUERY_BUDGET
        if not (self.actor_lr > 0 and self.critic_lr > 0):
            raise ValueError("--actor-lr and --critic-lr must be positive")
        positive = ("iterations", "rounds_per_iteration", "buffer_size", "batch_size", "eval_every", "eval_rounds",
                    "threads", "denoise_steps", "hidden", "best_of")
        bad = [k for k in positive if int(getattr(self, k)) < 1] + [k for k in ("minutes",) if not self.minutes > 0]
        if bad:
            flags = ", ".join("--" + k.replace("_", "-") for k in bad)
            raise ValueError(f"must be positive: {flags}")

    def folder(self) -> Path:
        return Path(self.out) if self.out else ROOT / "runs" / "policy" / f"{self.algo}-s{self.seed}"


def make_actor(args: Args, o_dim: int, a_dim: int) -> torch.nn.Module:
    if args.algo == "gddpg":
        return DiffusionActor(o_dim, a_dim, args.hidden, args.denoise_steps)
    return MLPActor(o_dim, a_dim, args.hidden)


def base_action(st, p: SystemParams, residual: bool) -> np.ndarray:
    """What the actor's output is added to: the greedy heuristic's action (residual) or nothing."""
    return greedy(st, p) if residual else np.zeros((st.batch, action_dim(st.k_max)))


def at_bounds(st: RoundState, action: np.ndarray, tol: float = 1e-3) -> float:
    """Share of the action entries of the slots in use (bandwidth, compute and sharing) within ``tol`` of -1 or 1."""
    a = np.asarray(action, dtype=float).reshape(st.batch, 3, st.k_max)
    m = np.broadcast_to(st.mask[:, None, :], a.shape)
    return float((np.abs(np.abs(a[m]) - 1.0) <= tol).mean()) if m.any() else float("nan")


@torch.inference_mode()
def act(actor: torch.nn.Module, obs: np.ndarray, seed: int | None = None, base: np.ndarray | None = None,
        critic: torch.nn.Module | None = None, best_of: int = 1) -> np.ndarray:
    """Actions for a batch of observations: clip(base + actor(obs), -1, 1); a diffusion actor draws its
    noise from ``seed`` (reproducible). With a ``critic`` and ``best_of`` = N > 1 the actor draws N candidate
    actions per observation and keeps the one min(Q1, Q2) scores highest (best-of-N at decision time)."""
    gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    o = torch.as_tensor(obs)
    n = int(best_of) if critic is not None else 1
    if n <= 1:
        a = actor(o, gen).numpy().astype(np.float64)
        return a if base is None else np.clip(base + a, -1.0, 1.0)
    b = o.shape[0]
    rep = o.repeat(n, 1)  # candidate j of observation i sits at row j * b + i
    a = actor(rep, gen).numpy().astype(np.float64)
    if base is not None:
        a = np.clip(np.tile(base, (n, 1)) + a, -1.0, 1.0)
    q = critic.q_min(rep, torch.as_tensor(a, dtype=torch.float32)).numpy().reshape(n, b)
    return a.reshape(n, b, -1)[q.argmax(axis=0), np.arange(b)]


def init_from(folder: str | Path, actor: torch.nn.Module, critic: torch.nn.Module, args: Args, o_dim: int,
              a_dim: int) -> dict:
    """Load a checkpoint's actor (and critic, where it has one) into freshly built networks: the layout (algorithm,
    observation and action sizes, width, denoising steps) must match. Returns the checkpoint's config."""
    from rlli.policy.checkpoint import CheckpointError, load_actor, load_critic

    src, meta = load_actor(folder)
    a = meta.get("actor", {})
    want = {"obs_dim": o_dim, "act_dim": a_dim, "hidden": args.hidden}
    if args.algo == "gddpg":
        want["denoise_steps"] = args.denoise_steps
    have = {k: a.get(k) for k in want}
    kind = "gddpg" if "Diffusion" in type(src).__name__ else "ddpg"
    if kind != args.algo or any(have[k] is not None and int(have[k]) != v for k, v in want.items()):
        raise CheckpointError(f"--init {folder}: a {kind} checkpoint with {have}, this run builds a {args.algo} with "
                              f"{want}")
    actor.load_state_dict(src.state_dict())
    c = load_critic(folder, meta)
    if c is not None:
        critic.load_state_dict(c.state_dict())
    return meta


def policy_loss(actor: torch.nn.Module, critic: DoubleCritic, obs: torch.Tensor, base: torch.Tensor,
                bc_target: torch.Tensor, bc: float) -> torch.Tensor:
    """The actor's loss: -min(Q1, Q2) of clip(base + actor(obs)) through the whole reverse chain; with ``bc`` > 0,
    Diffusion-QL / TD3+BC: Q ascent normalised by |Q|, plus ``bc`` x behaviour cloning toward ``bc_target``."""
    q = critic.q_min(obs, torch.clamp(base + actor(obs), -1.0, 1.0))
    if bc > 0:
        return -q.mean() / q.abs().mean().detach().clamp(min=1e-6) + bc * actor.bc_loss(obs, bc_target)
    return -q.mean()


@torch.no_grad()
def soft_update(target: torch.nn.Module, source: torch.nn.Module, tau: float) -> None:
    """Polyak averaging: target <- (1 - tau) target + tau source (GDMOPT's soft target update)."""
    for tp, sp in zip(target.parameters(), source.parameters()):
        tp.mul_(1.0 - tau).add_(sp, alpha=tau)


def train(args: Args, p: SystemParams | None = None, qoe_fn: QoeFn | None = None,
          log: Callable[[str], None] = print, reward_model=None, judge: str | None = None) -> dict:
    """Train one policy; returns the final validation figures and the checkpoint folder. With a ``reward_model``
    (rlli.policy.reward_model.RewardModel) QoE comes from it, it is saved beside the checkpoint
    (reward_model.json), and ``judge`` (what the config records) says where its answers came from."""
    if reward_model is not None:
        qoe_fn = reward_model.qoe
    # ---- seeding (one block, as CleanRL)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    # ---- the system model and fixed validation rounds
    p = p or SystemParams()
    curves = training_curves(p.steps)
    val = sample_states(np.random.default_rng(VALIDATION_SEED), args.eval_rounds, p, curves)
    val_obs, val_base = encode(val, p, args.obs_version), base_action(val, p, args.residual)
    o_dim, a_dim = obs_dim(p.k_max, args.obs_version), action_dim(p.k_max)

    # ---- networks: actor, its Polyak-averaged copy (the deployed policy), twin critics
    actor = make_actor(args, o_dim, a_dim)
    deployed = make_actor(args, o_dim, a_dim)
    deployed.load_state_dict(actor.state_dict())
    critic = DoubleCritic(o_dim, a_dim, args.hidden)
    init_meta = None
    if args.init:
        init_meta = init_from(args.init, actor, critic, args, o_dim, a_dim)
        deployed.load_state_dict(actor.state_dict())
        log(f"started from {args.init} ({init_meta.get('judge', 'trait/parametric-v1')}, "
            f"{init_meta.get('iterations_done', '?')} iterations)")
    actor_opt = torch.optim.AdamW(actor.parameters(), lr=args.actor_lr, weight_decay=args.weight_decay)
    critic_opt = torch.optim.AdamW(critic.parameters(), lr=args.critic_lr, weight_decay=args.weight_decay)

    # ---- replay buffer (flat arrays)
    buf_obs = np.zeros((args.buffer_size, o_dim), np.float32)
    buf_act = np.zeros((args.buffer_size, a_dim), np.float32)
    buf_base = np.zeros((args.buffer_size, a_dim), np.float32)
    buf_rew = np.zeros(args.buffer_size, np.float32)
    buf_bc = np.zeros((args.buffer_size, a_dim), np.float32)  # behaviour-cloning target (when bc > 0)
    filled, pos = 0, 0

    folder = args.folder()
    folder.mkdir(parents=True, exist_ok=True)
    curve_path = folder / "curve.csv"
    curve_f = curve_path.open("w", newline="")
    curve = csv.writer(curve_f)
    curve.writerow(["iteration", "rounds", "wall_s", "reward", "qoe", "energy_j", "critic_loss", "actor_loss",
                    "at_bounds", "clamp_share"])
    if judge is None:
        judge = "trait/parametric-v1" if qoe_fn is None else f"{args.judge} (a QoE function passed in)"
    meta = {"args": asdict(args), "system": p.as_dict(), "judge": judge, "obs_dim": o_dim, "act_dim": a_dim,
            "obs_version": args.obs_version, "validation_seed": VALIDATION_SEED, "residual": args.residual,
            "curves": curves.source, "best_of": args.best_of}
    if reward_model is not None:
        reward_model.save(folder / "reward_model.json")
        meta["reward_model"] = {"file": "reward_model.json", "judge": reward_model.judge,
                                "figures": reward_model.figures, "info": reward_model.info}
    if init_meta is not None:
        meta["init"] = {"folder": str(args.init), "judge": init_meta.get("judge", "trait/parametric-v1"),
                        "iterations_done": init_meta.get("iterations_done")}

    def validate() -> dict:
        a_val = act(deployed, val_obs, seed=VALIDATION_SEED, base=val_base, critic=critic, best_of=args.best_of)
        out = evaluate(val, a_val, p, qoe_fn)
        gen = torch.Generator().manual_seed(VALIDATION_SEED)
        return {"reward": float(out.reward.mean()), "qoe": float(out.total_qoe.mean()),
                "energy_j": float(out.energy_j.mean()), "at_bounds": at_bounds(val, a_val),
                "clamp_share": float(deployed.clamp_share(torch.as_tensor(val_obs), gen))}

    t0 = time.perf_counter()
    critic_loss = actor_loss = float("nan")
    last = validate()
    bar = tqdm(range(args.iterations), desc=f"{args.algo} seed {args.seed}", disable=not args.progress,
               mininterval=2.0)
    it = 0
    for it in bar:
        # ---- collect: new rounds, act (random at first, then the actor plus exploration noise)
        st = sample_states(rng, args.rounds_per_iteration, p, curves)
        obs, base = encode(st, p, args.obs_version), base_action(st, p, args.residual)
        if filled < args.learning_starts:
            a = rng.uniform(-1.0, 1.0, size=(st.batch, a_dim))
        else:
            a = act(actor, obs, base=base) + args.exploration_noise * rng.standard_normal((st.batch, a_dim))
            a = np.clip(a, -1.0, 1.0)
        r = evaluate(st, a, p, qoe_fn).reward
        idx = (pos + np.arange(st.batch)) % args.buffer_size
        if args.bc > 0:  # the better of greedy's action and the one taken: a best-found target that can pass greedy
            g = greedy(st, p)
            better = (evaluate(st, g, p, qoe_fn).reward > r)[:, None]
            buf_bc[idx] = np.where(better, g, a) - base
        if args.advantage:  # minus what not sharing earns in the same round: same argmax, far less variance
            r = r - evaluate(st, action_for(st, np.zeros_like(st.max_shared)), p, qoe_fn).reward
        r = r * args.reward_scale
        buf_obs[idx], buf_act[idx], buf_base[idx], buf_rew[idx] = obs, a, base, r
        pos = int((pos + st.batch) % args.buffer_size)
        filled = min(filled + st.batch, args.buffer_size)

        if filled >= args.learning_starts:
            # ---- critic: regress both Q heads on the reward (one-step episodes: the TD target is r)
            b = rng.integers(0, filled, size=args.batch_size)
            o, ac, y = (torch.as_tensor(buf_obs[b]), torch.as_tensor(buf_act[b]), torch.as_tensor(buf_rew[b]))
            q1, q2 = critic(o, ac)
            loss = F.mse_loss(q1, y) + F.mse_loss(q2, y)
            critic_opt.zero_grad()
            loss.backward()
            critic_opt.step()
            critic_loss = loss.item()

            # ---- actor: ascend min(Q1, Q2) through the whole reverse chain; then the soft update
            if it % args.policy_frequency == 0:
                pi_loss = policy_loss(actor, critic, o, torch.as_tensor(buf_base[b]), torch.as_tensor(buf_bc[b]), args.bc)
                actor_opt.zero_grad()
                pi_loss.backward()
                actor_opt.step()
                actor_loss = pi_loss.item()
                soft_update(deployed, actor, args.tau)

        # ---- learning curve and checkpoint
        over_time = time.perf_counter() - t0 > 60.0 * args.minutes
        if (it + 1) % args.eval_every == 0 or it + 1 == args.iterations or over_time:
            last = validate()
            curve.writerow([it + 1, (it + 1) * args.rounds_per_iteration, round(time.perf_counter() - t0, 2),
                            round(last["reward"], 4), round(last["qoe"], 4), round(last["energy_j"], 3),
                            round(critic_loss, 6), round(actor_loss, 6), round(last["at_bounds"], 4),
                            round(last["clamp_share"], 4)])
            curve_f.flush()
            bar.set_postfix(reward=f"{last['reward']:.3f}")
            save_actor(folder, deployed, {**meta, "iterations_done": it + 1, "validation": last,
                                          "wall_s": round(time.perf_counter() - t0, 1)})
            save_critic(folder, critic)
        if over_time:
            log(f"stopped at the {args.minutes}-minute cap after {it + 1} iterations")
            break
    curve_f.close()
    wall = time.perf_counter() - t0
    save_actor(folder, deployed, {**meta, "iterations_done": it + 1, "validation": last, "wall_s": round(wall, 1)})
    save_critic(folder, critic)
    (folder / "train.json").write_text(json.dumps({"validation": last, "wall_s": round(wall, 1),
                                                   "iterations_done": it + 1}, indent=1))
    log(f"{args.algo} seed {args.seed}: validation reward {last['reward']:.3f} (QoE {last['qoe']:.2f}, energy "
        f"{last['energy_j']:.1f} J, at bounds {last['at_bounds']:.3f}, x0 clamped {last['clamp_share']:.3f}) after "
        f"{it + 1} iterations, {wall:.0f} s -> {folder}")
    return {"folder": str(folder), "wall_s": wall, **last}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The training flags, shared by ``python -m rlli train policy`` and ``python -m rlli.policy.train``."""
    p.add_argument("--algo", choices=["gddpg", "ddpg"], default="gddpg")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=Args.iterations,
                   help=f"loop iterations, {Args.rounds_per_iteration} new rounds each (default {Args.iterations})")
    p.add_argument("--minutes", type=float, default=Args.minutes, help="wall-clock cap (default 10)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--denoise-steps", type=int, default=Args.denoise_steps,
                   help="G-DDPG: reverse diffusion steps (default 5; 1 is the ablation without a chain)")
    p.add_argument("--bc", type=float, default=0.0,
                   help="behaviour-cloning weight in the actor loss (0 = plain; Diffusion-QL / TD3+BC style when > 0)")
    p.add_argument("--best-of", type=int, default=1,
                   help="candidate actions per decision, the saved critic keeps the best (default 1)")
    p.add_argument("--obs-version", type=int, choices=[1, 2], default=Args.obs_version,
                   help="observation layout (default 2: with band, server speed, N, users, backlog, batteries)")
    p.add_argument("--judge", choices=["trait", "llm"], default="trait",
                   help="trait: the parametric persona judge; llm: the persona LLM judge (RLLI_LLM_*: the embedded "
                        "SmolLM2 or any OpenAI-compatible endpoint) through a reward model fitted on --query-budget "
                        "queries")
    p.add_argument("--query-budget", type=int, default=None,
                   help=f"judge queries for the reward model (--judge llm: default {DEFAULT_QUERY_BUDGET}; with "
                        "--judge trait: the trait judge through the same reward-model pipeline)")
    p.add_argument("--query-cache", default="", help="judge answers kept here, a rerun asks only what is missing "
                   "(default runs/policy/judge-queries.json)")
    p.add_argument("--reward-model", default="", help="train on a saved reward_model.json instead of asking a judge")
    p.add_argument("--fit-only", action="store_true", help="ask the judge and fit the reward model (saved as "
                   "<out>/reward_model.json), do not train")
    p.add_argument("--init", default="", help="start actor and critic from this checkpoint folder (fine-tuning)")
    p.add_argument("--actor-lr", type=float, default=None, help="actor learning rate (default per algorithm: "
                   + ", ".join(f"{k} {v:g}" for k, v in TUNED_LR.items()) + ")")
    p.add_argument("--critic-lr", type=float, default=None, help="critic learning rate (default as --actor-lr)")
    p.add_argument("--out", default="", help="checkpoint folder (default runs/policy/<algo>-s<seed>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def args_from(ns: argparse.Namespace) -> Args:
    return Args(algo=ns.algo, seed=ns.seed, iterations=ns.iterations, minutes=ns.minutes, threads=ns.threads,
                judge=ns.judge, out=ns.out, progress=not ns.no_progress, denoise_steps=ns.denoise_steps, bc=ns.bc,
                obs_version=ns.obs_version, best_of=ns.best_of, query_budget=ns.query_budget,
                reward_model=ns.reward_model, query_cache=ns.query_cache, init=ns.init, actor_lr=ns.actor_lr,
                critic_lr=ns.critic_lr)


def saved_reward_model(path: str | Path):
    """(RewardModel, judge label) from a saved reward_model.json."""
    from rlli.policy.reward_model import RewardModel

    model = RewardModel.load(path)
    kind = model.judge.split("/", 1)[0] or "unknown"
    return model, f"{kind}:{model.judge} via reward model ({model.info.get('answered', len(model.score))} queries)"


if __name__ == "__main__":  # numpy + torch only (no settings object): what scripts/train_policies.sh runs
    parser = argparse.ArgumentParser(prog="python -m rlli.policy.train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    ns = parser.parse_args()
    if ns.fit_only:
        parser.error("--fit-only asks a judge: use `python -m rlli train policy --judge ... --query-budget N --fit-only`")
    if ns.reward_model:
        try:
            rm, label = saved_reward_model(ns.reward_model)
            a = args_from(ns)
        except ValueError as e:
            parser.error(str(e))
        train(a, reward_model=rm, judge=label)
    else:
        if ns.judge != "trait" or ns.query_budget is not None:
            parser.error("asking a judge needs the app's settings: use `python -m rlli train policy --judge ... "
                         "--query-budget N` (or --reward-model FILE here)")
        try:
            a = args_from(ns)
        except ValueError as e:
            parser.error(str(e))
        train(a)
