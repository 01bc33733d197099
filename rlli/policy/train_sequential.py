"""Train G-DDPG or DDPG on the sequential environment: users who stay, a server queue, batteries.

Read top to bottom, as CleanRL writes an algorithm (TD3's shape): arguments, seeding, the environments,
networks, the loop (step a batch of episodes side by side -> transitions (s, a, r, s', done) -> replay
buffer -> twin-critic regression on the TD target r + gamma (1 - done) min(Q1', Q2')(s', pi'(s')) with a
target critic -> actor ascent on min(Q1, Q2) plus behaviour cloning -> soft updates), validation on fixed
episodes (the discounted return), checkpoints and a CSV learning curve.

What this shares with the one-round trainer (rlli/policy/train.py), imported from it: the actors and
critics, ``act`` (best-of-N by the critic at decision time), ``base_action``, ``at_bounds``, ``make_actor``,
the ``Args`` fields and the shipped recipe (``--bc 1``: Diffusion-QL / TD3+BC toward the better of the greedy
heuristic's action and the action taken in the same round; ``--best-of 8`` for G-DDPG). What differs:

* ``rounds_per_iteration`` episodes run side by side, one ``SequentialAllocationEnv`` each (the environment's
  own step, so the dynamics are the ones evaluation and the baselines see); each iteration steps every one of
  them one round. Every episode's last round is terminal (``done`` = 1: no bootstrap past it).
* gamma is the environment's (``env.gamma``, 0.9); the target actor is the deployed (Polyak) actor, with TD3's
  clipped target-policy noise; the target critic is a Polyak copy (tau) of the twin critics.
* The advantage baseline: the reward minus what not sharing earns in the same round with full batteries.
  That reference depends only on the part of the state the actions do not move (users, links, traits,
  prompts: arrivals, stays and fading are the same whatever the policy does), so subtracting it shifts every
  Q(s, .) by a function of s alone and leaves the best action where it was.
* Validation: the discounted return (gamma) of ``validation_episodes`` fixed episodes (seeds
  VALIDATION_SEED + i, apart from evaluation's EVAL_SEED + i and from training's seeds), acted exactly as
  ``rlli.policy.evaluate.evaluate_sequential`` acts (observation v2, best-of-N with the saved critic).

    python -m rlli.policy.train_sequential --algo gddpg --bc 1 --best-of 8 --seed 0 --out runs/seq/gddpg-s0
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from rlli.network.allocation import QoeFn, action_dim, evaluate
from rlli.network.env import SequentialAllocationEnv
from rlli.network.params import SystemParams
from rlli.network.state import RoundState, encode, obs_dim
from rlli.policy import train as one_round
from rlli.policy.actors import DoubleCritic
from rlli.policy.baselines import greedy, no_sharing
from rlli.policy.checkpoint import CheckpointError, save_actor, save_critic
from rlli.policy.forks import training_curves
from rlli.policy.train import VALIDATION_SEED, act, at_bounds, base_action, init_from, make_actor, policy_loss, soft_update

TRAIN_SEED_STRIDE = 10_000  # training episode i of run seed k starts from env seed k * 10_000 + i (then its own stream)


@dataclass
class Args(one_round.Args):
    """The one-round trainer's arguments (same meaning, same defaults, same recipe flags: the shipped recipe is
    ``--bc 1 --best-of 8`` for G-DDPG, ``--bc 1`` for DDPG) plus the sequential env's own. An iteration steps every
    one of the ``rounds_per_iteration`` episodes one round."""

    rounds_per_iteration: int = 16
    """episodes run side by side (one environment each): transitions per iteration"""
    eval_every: int = 100
    episode_length: int = 20
    """rounds per episode (evaluation's default: 20)"""
    server_ghz: float = 20.0
    """server speed (20 = one A10; 5 is the contended setting where lookahead pays, docs/policy.md)"""
    validation_episodes: int = 16
    """fixed validation episodes (seeds VALIDATION_SEED + i) for the learning curve"""
    target_noise: float = 0.2
    """std of TD3's target-policy smoothing noise on the target action"""
    target_noise_clip: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.judge != "trait" or self.query_budget is not None or self.reward_model:
            raise ValueError("the sequential trainer learns from the trait judge (--judge trait); the reward-model (-LI) "
                             "path (--judge llm, --query-budget, --reward-model) is one-round only")
        if self.obs_version != 2:
            raise ValueError("the sequential env needs --obs-version 2 (the layout with the server queue and batteries)")
        positive = [k for k in ("episode_length", "validation_episodes") if int(getattr(self, k)) < 1]
        positive += [k for k in ("server_ghz",) if not getattr(self, k) > 0]
        if positive:
            raise ValueError("must be positive: " + ", ".join("--" + k.replace("_", "-") for k in positive))
        if not (self.target_noise >= 0 and self.target_noise_clip >= 0):
            raise ValueError("--target-noise and --target-noise-clip must be >= 0")

    def folder(self) -> Path:
        return Path(self.out) if self.out else one_round.ROOT / "runs" / "policy" / f"seq-{self.algo}-s{self.seed}"

    def params(self) -> SystemParams:
        return SystemParams(server_hz=self.server_ghz * 1e9)


def td_target(reward: torch.Tensor, done: torch.Tensor, q_next: torch.Tensor, gamma: float) -> torch.Tensor:
    """r + gamma (1 - done) Q'(s', a'): an episode's last round bootstraps nothing."""
    return reward + gamma * (1.0 - done) * q_next


def exogenous_reference(st: RoundState, p: SystemParams, qoe_fn: QoeFn | None) -> np.ndarray:
    """What not sharing earns in these rounds with full batteries: a function of the action-independent part of
    the state only (no server use, so no queue; battery fixed), the advantage baseline."""
    full = replace(st, battery=np.ones_like(st.battery))
    return evaluate(full, no_sharing(full, p), p, qoe_fn).reward


def run_validation(envs: list[SequentialAllocationEnv], policy: Callable[[RoundState, np.ndarray, int], np.ndarray],
                   p: SystemParams) -> dict:
    """Every validation episode from its fixed seed, side by side: mean discounted return, reward, QoE and energy per
    round, missed deadlines per episode, share of action entries at a bound. ``policy(state, obs, t) -> actions``."""
    for i, e in enumerate(envs):
        e.reset(seed=VALIDATION_SEED + i)
    n, gamma = len(envs), envs[0].gamma
    ret, reward, qoe, energy, missed, bounds = np.zeros(n), [], [], [], np.zeros(n), []
    for t in range(envs[0].episode_length):
        st = RoundState.concat([e.state for e in envs])
        a = policy(st, encode(st, p, 2), t)
        bounds.append(at_bounds(st, a))
        for i, e in enumerate(envs):
            _, r, _, _, info = e.step(a[i])
            ret[i] += gamma**t * r
            reward.append(r)
            qoe.append(info["total_qoe"])
            energy.append(info["energy_j"])
            missed[i] += info["missed"]
    return {"return": float(ret.mean()), "reward": float(np.mean(reward)), "qoe": float(np.mean(qoe)),
            "energy_j": float(np.mean(energy)), "missed": float(missed.mean()), "at_bounds": float(np.mean(bounds))}


def train(args: Args, p: SystemParams | None = None, qoe_fn: QoeFn | None = None,
          log: Callable[[str], None] = print) -> dict:
    """Train one policy on the sequential env; returns the final validation figures and the checkpoint folder."""
    # ---- seeding (one block, as CleanRL)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    # ---- the environments: training episodes side by side, fixed validation episodes
    p = p or args.params()
    curves = training_curves(p.steps)

    def make_env() -> SequentialAllocationEnv:
        return SequentialAllocationEnv(p, curves, qoe_fn, episode_length=args.episode_length, obs_version=2)

    envs = [make_env() for _ in range(args.rounds_per_iteration)]
    for i, e in enumerate(envs):
        e.reset(seed=TRAIN_SEED_STRIDE * args.seed + i)
    val_envs = [make_env() for _ in range(args.validation_episodes)]
    gamma = envs[0].gamma
    o_dim, a_dim = obs_dim(p.k_max, 2), action_dim(p.k_max)

    # ---- networks: actor, its Polyak copy (deployed policy and TD3's target actor), twin critics and their target
    actor = make_actor(args, o_dim, a_dim)
    deployed = make_actor(args, o_dim, a_dim)
    deployed.load_state_dict(actor.state_dict())
    critic = DoubleCritic(o_dim, a_dim, args.hidden)
    init_meta = None
    if args.init:  # fine-tuning: actor and critic from a checkpoint (e.g. a one-round one) with the same layout
        init_meta = init_from(args.init, actor, critic, args, o_dim, a_dim)
        deployed.load_state_dict(actor.state_dict())
        log(f"started from {args.init} ({init_meta.get('iterations_done', '?')} iterations, env "
            f"{init_meta.get('env', 'one-round')})")
    critic_target = DoubleCritic(o_dim, a_dim, args.hidden)
    critic_target.load_state_dict(critic.state_dict())
    actor_opt = torch.optim.AdamW(actor.parameters(), lr=args.actor_lr, weight_decay=args.weight_decay)
    critic_opt = torch.optim.AdamW(critic.parameters(), lr=args.critic_lr, weight_decay=args.weight_decay)

    # ---- replay buffer (flat arrays): s, a, r, s', done, the residual bases of s and s', the BC target
    buf_obs = np.zeros((args.buffer_size, o_dim), np.float32)
    buf_next = np.zeros((args.buffer_size, o_dim), np.float32)
    buf_act = np.zeros((args.buffer_size, a_dim), np.float32)
    buf_base = np.zeros((args.buffer_size, a_dim), np.float32)
    buf_next_base = np.zeros((args.buffer_size, a_dim), np.float32)
    buf_rew = np.zeros(args.buffer_size, np.float32)
    buf_done = np.zeros(args.buffer_size, np.float32)
    buf_bc = np.zeros((args.buffer_size, a_dim), np.float32)
    filled, pos, episodes = 0, 0, 0

    folder = args.folder()
    folder.mkdir(parents=True, exist_ok=True)
    curve_f = (folder / "curve.csv").open("w", newline="")
    curve = csv.writer(curve_f)
    curve.writerow(["iteration", "rounds", "episodes", "wall_s", "return", "reward", "qoe", "energy_j", "missed",
                    "critic_loss", "actor_loss", "q_mean", "at_bounds", "clamp_share"])
    meta = {"args": asdict(args), "system": p.as_dict(), "env": "sequential",
            "env_params": {"episode_length": args.episode_length, "gamma": gamma, "arrival_rate": envs[0].arrival_rate,
                           "mean_stay": envs[0].mean_stay, "background_load": envs[0].background_load},
            "judge": "trait/parametric-v1" if qoe_fn is None else "a QoE function passed in",
            "obs_dim": o_dim, "act_dim": a_dim, "obs_version": 2,
            "validation_seed": VALIDATION_SEED, "validation_episodes": args.validation_episodes,
            "residual": args.residual, "curves": curves.source, "best_of": args.best_of}
    if init_meta is not None:
        meta["init"] = {"folder": str(args.init), "env": init_meta.get("env", "one-round"),
                        "judge": init_meta.get("judge", "trait/parametric-v1"),
                        "iterations_done": init_meta.get("iterations_done")}

    def learned(st: RoundState, obs: np.ndarray, t: int) -> np.ndarray:
        return act(deployed, obs, seed=VALIDATION_SEED + t, base=base_action(st, p, args.residual), critic=critic,
                   best_of=args.best_of)

    def validate() -> dict:
        out = run_validation(val_envs, learned, p)
        val_envs[0].reset(seed=VALIDATION_SEED)
        obs0 = torch.as_tensor(encode(val_envs[0].state, p, 2))
        out["clamp_share"] = float(deployed.clamp_share(obs0, torch.Generator().manual_seed(VALIDATION_SEED)))
        return out

    meta["validation_greedy"] = run_validation(val_envs, lambda st, obs, t: greedy(st, p), p)
    t0 = time.perf_counter()
    critic_loss = actor_loss = q_mean = float("nan")
    last = validate()
    bar = tqdm(range(args.iterations), desc=f"sequential {args.algo} seed {args.seed}", disable=not args.progress,
               mininterval=2.0)
    it = 0
    for it in bar:
        # ---- collect: one round of every episode (random actions at first, then the actor plus exploration noise)
        st = RoundState.concat([e.state for e in envs])
        obs, base = encode(st, p, 2), base_action(st, p, args.residual)
        if filled < args.learning_starts:
            a = rng.uniform(-1.0, 1.0, size=(st.batch, a_dim))
        else:
            a = act(actor, obs, base=base) + args.exploration_noise * rng.standard_normal((st.batch, a_dim))
            a = np.clip(a, -1.0, 1.0)
        r, done, nxt = np.zeros(st.batch), np.zeros(st.batch), []
        for i, e in enumerate(envs):
            _, r[i], terminated, truncated, _ = e.step(a[i])
            done[i] = float(terminated)  # truncation (none here) would still bootstrap
            nxt.append(e.state)  # after a terminal round: the round itself (the target masks it out)
            if terminated or truncated:
                e.reset()  # the next episode continues the environment's own random stream
                episodes += 1
        nxt_st = RoundState.concat(nxt)
        idx = (pos + np.arange(st.batch)) % args.buffer_size
        if args.bc > 0:  # the better (this round's reward) of greedy's action and the one taken
            g = greedy(st, p)
            better = (evaluate(st, g, p, qoe_fn).reward > r)[:, None]
            buf_bc[idx] = np.where(better, g, a) - base
        if args.advantage:
            r = r - exogenous_reference(st, p, qoe_fn)
        buf_obs[idx], buf_act[idx], buf_base[idx], buf_rew[idx] = obs, a, base, r * args.reward_scale
        buf_next[idx], buf_next_base[idx], buf_done[idx] = encode(nxt_st, p, 2), base_action(nxt_st, p, args.residual), done
        pos = int((pos + st.batch) % args.buffer_size)
        filled = min(filled + st.batch, args.buffer_size)

        if filled >= args.learning_starts:
            # ---- critic: regress both Q heads on the TD target from the target actor and target critic
            b = rng.integers(0, filled, size=args.batch_size)
            o, ac, rew = torch.as_tensor(buf_obs[b]), torch.as_tensor(buf_act[b]), torch.as_tensor(buf_rew[b])
            with torch.no_grad():
                o2 = torch.as_tensor(buf_next[b])
                noise = (torch.randn((len(b), a_dim)) * args.target_noise).clamp(-args.target_noise_clip,
                                                                                args.target_noise_clip)
                a2 = (torch.as_tensor(buf_next_base[b]) + deployed(o2) + noise).clamp(-1.0, 1.0)
                y = td_target(rew, torch.as_tensor(buf_done[b]), critic_target.q_min(o2, a2), gamma)
            q1, q2 = critic(o, ac)
            loss = F.mse_loss(q1, y) + F.mse_loss(q2, y)
            critic_opt.zero_grad()
            loss.backward()
            critic_opt.step()
            critic_loss, q_mean = loss.item(), q1.mean().item()

            # ---- actor: ascend min(Q1, Q2) through the whole reverse chain (+ BC); then the soft updates
            if it % args.policy_frequency == 0:
                pi_loss = policy_loss(actor, critic, o, torch.as_tensor(buf_base[b]), torch.as_tensor(buf_bc[b]), args.bc)
                actor_opt.zero_grad()
                pi_loss.backward()
                actor_opt.step()
                actor_loss = pi_loss.item()
                soft_update(deployed, actor, args.tau)
                soft_update(critic_target, critic, args.tau)

        # ---- learning curve and checkpoint
        over_time = time.perf_counter() - t0 > 60.0 * args.minutes
        if (it + 1) % args.eval_every == 0 or it + 1 == args.iterations or over_time:
            last = validate()
            curve.writerow([it + 1, (it + 1) * args.rounds_per_iteration, episodes, round(time.perf_counter() - t0, 2),
                            round(last["return"], 4), round(last["reward"], 4), round(last["qoe"], 4),
                            round(last["energy_j"], 3), round(last["missed"], 3), round(critic_loss, 6),
                            round(actor_loss, 6), round(q_mean, 4), round(last["at_bounds"], 4),
                            round(last["clamp_share"], 4)])
            curve_f.flush()
            bar.set_postfix(ret=f"{last['return']:.2f}")
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
    (folder / "train.json").write_text(json.dumps({"validation": last, "validation_greedy": meta["validation_greedy"],
                                                   "wall_s": round(wall, 1), "iterations_done": it + 1,
                                                   "episodes": episodes}, indent=1))
    log(f"sequential {args.algo} seed {args.seed}: validation return {last['return']:.3f} (greedy "
        f"{meta['validation_greedy']['return']:.3f}; QoE {last['qoe']:.2f} per round, missed {last['missed']:.1f} per "
        f"episode, at bounds {last['at_bounds']:.3f}) after {it + 1} iterations, {episodes} episodes, {wall:.0f} s "
        f"-> {folder}")
    return {"folder": str(folder), "wall_s": wall, **last}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The one-round trainer's flags plus the sequential env's (for ``python -m rlli train policy --env sequential``
    the command adds only :func:`add_sequential_arguments`)."""
    one_round.add_arguments(p)
    add_sequential_arguments(p)


def add_sequential_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--episode-length", type=int, default=Args.episode_length,
                   help=f"sequential: rounds per episode (default {Args.episode_length})")
    p.add_argument("--server-ghz", type=float, default=Args.server_ghz,
                   help="sequential: server speed (default 20 = one A10; 5 = the contended setting)")


UNSUPPORTED = {"query_budget": "--query-budget", "reward_model": "--reward-model", "query_cache": "--query-cache",
               "fit_only": "--fit-only"}  # the one-round trainer's reward-model flags (the -LI arm)


def args_from(ns: argparse.Namespace) -> Args:
    used = [flag for k, flag in UNSUPPORTED.items() if getattr(ns, k, None) not in (None, "", False)]
    if used:
        raise ValueError(f"{', '.join(used)}: the reward-model (-LI) path is one-round only; the sequential trainer "
                         "learns from the trait judge")
    return Args(algo=ns.algo, seed=ns.seed, iterations=ns.iterations, minutes=ns.minutes, threads=ns.threads,
                judge=ns.judge, out=ns.out, progress=not ns.no_progress, denoise_steps=ns.denoise_steps, bc=ns.bc,
                obs_version=ns.obs_version, best_of=ns.best_of, init=getattr(ns, "init", ""),
                actor_lr=getattr(ns, "actor_lr", None), critic_lr=getattr(ns, "critic_lr", None),
                episode_length=ns.episode_length, server_ghz=ns.server_ghz)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlli.policy.train_sequential", description=__doc__.splitlines()[0])
    add_arguments(parser)
    ns = parser.parse_args(argv)
    try:
        args = args_from(ns)
    except ValueError as e:
        parser.error(str(e))
    try:
        train(args)
    except CheckpointError as e:  # --init: a missing, unreadable or differently shaped checkpoint
        parser.error(str(e))
    return 0


if __name__ == "__main__":  # numpy + torch only (no settings object): what scripts/train_sequential.sh runs
    raise SystemExit(main())
