"""Commands of the personas package: ``generate``, ``judge``, ``personas list|sample|tipi|fidelity``,
``bench injection`` and ``bench judge``."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rlli.commands.io import fail, print_json
from rlli.config import Settings


def _generate_image(settings: Settings, prompt: str, seed: int):
    """(uint8 image, seconds) of one prompt through the service (the configured backbone)."""
    from rlli.service import StudioService

    t = time.perf_counter()
    report = StudioService(settings).run_round(prompt, seed)
    return report.outputs[0].image, time.perf_counter() - t


# ---------------------------------------------------------------------------------------- generate

def _generate(args) -> int:
    from rlli.personas.describe import png_bytes
    from rlli.prompts import PromptError

    s = Settings()
    try:
        image, secs = _generate_image(s, args.prompt, args.seed)
    except PromptError as e:
        return fail(str(e))
    out = Path(args.out or f"generated-{args.seed}.png")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(png_bytes(image))
    except OSError as e:
        return fail(f"cannot write {out}: {e.strerror or e}")
    print(f"wrote {out} ({image.shape[1]}x{image.shape[0]}, {secs:.2f} s, backbone {s.backbone}, seed {args.seed})")
    return 0


# ---------------------------------------------------------------------------------------- judge

def _judge(args) -> int:
    from rlli.personas import PersonaError, find_preset, get_judge
    from rlli.personas.describe import make_delivery, read_png
    from rlli.prompts import PromptError, clean_prompt

    s = Settings()
    try:
        persona = find_preset(args.persona)
    except PersonaError as e:
        return fail(str(e))
    prompt = clean_prompt(args.prompt)
    if not prompt:
        return fail("the prompt is empty")
    if len(prompt) > s.max_prompt_chars:
        return fail(f"the prompt has {len(prompt)} characters; the limit is {s.max_prompt_chars} (RLLI_MAX_PROMPT_CHARS)")
    if not 0.0 <= args.quality <= 1.0 or (args.delay is not None and not 0 <= args.delay <= 86_400):
        return fail("--quality must be in [0, 1] and --delay between 0 and 86400 seconds")
    delay = args.delay
    if args.image:
        try:
            image = read_png(Path(args.image).read_bytes())
        except OSError as e:
            return fail(f"cannot read {args.image}: {e.strerror or e}")
        except ValueError as e:
            return fail(f"{args.image}: {e}")
    else:
        try:
            image, secs = _generate_image(s, prompt, args.seed)
        except PromptError as e:
            return fail(str(e))
        delay = secs if delay is None else delay
    delivery = make_delivery(prompt, image, quality=args.quality, delay_s=delay or 0.0)
    rating = get_judge(args.judge, s).rate(persona, delivery)
    if args.json:
        print(json.dumps(rating.as_dict()))
    else:
        shown = "no score" if rating.score is None else f"{rating.score}/10"
        print(f"{persona.name}: {shown} [{rating.status}, {rating.backend} {rating.model}, {rating.latency_s:.2f} s]")
        print(f"  {rating.reason}")
        if delivery.description:
            print(f"  (the judge was told: {delivery.description})")
    return 0 if rating.status == "ok" else 1


# ---------------------------------------------------------------------------------------- personas

def _personas(args) -> int:
    return {"list": _list, "sample": _sample, "tipi": _tipi, "fidelity": _fidelity}[args.what](args)


def _persona_row(p) -> dict:
    from rlli.personas.judge import TRAITS

    return {"name": p.name, **{t: round(v, 3) for t, v in zip(TRAITS, p.traits.as_tuple())},
            "description": p.description, "instrument": p.instrument}


def _print_personas(personas, as_json: bool) -> None:
    rows = [_persona_row(p) for p in personas]
    if as_json:
        print_json(rows)
        return
    print(f"{'name':16s}    O     C     E     A     N")
    for r in rows:
        vals = "  ".join(f"{r[t]:.2f}" for t in ("openness", "conscientiousness", "extraversion", "agreeableness",
                                                 "neuroticism"))
        print(f"{r['name']:16s}  {vals}  {r['description'][:60]}")


def _list(args) -> int:
    from rlli.personas import load_presets

    _print_personas(load_presets(), args.json)
    return 0


def _sample(args) -> int:
    from rlli.personas.population import norms, sample_profiles

    if not 1 <= args.n <= 10_000:
        return fail("N must be between 1 and 10000")
    _print_personas(sample_profiles(args.n, args.seed), args.json)
    if not args.json:
        print(f"(drawn from {norms().source}, seed {args.seed})")
    return 0


def _tipi(args) -> int:
    from rlli.personas.tipi import TipiError, score

    try:
        traits = score(args.answers)
    except TipiError as e:
        return fail(str(e))
    row = {k: round(v, 4) for k, v in zip(("openness", "conscientiousness", "extraversion", "agreeableness",
                                           "neuroticism"), traits.as_tuple())}
    print(json.dumps(row) if args.json else "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
    return 0


def _fidelity(args) -> int:
    from rlli.personas import load_presets
    from rlli.personas.fidelity import run_fidelity

    if not 1 <= args.repeats <= 100:
        return fail("--repeats must be between 1 and 100")
    log = None if args.json else (lambda m: print(m, flush=True))
    r = run_fidelity(load_presets(), args.repeats, args.judge, Settings(), seed=args.seed, log=log)
    if args.json:
        d = r.as_dict()
        if not args.details:
            d.pop("recovered")
        print_json(d)
        return 0
    fmt = lambda v: "  n/a" if v is None else f"{v:+.3f}"  # noqa: E731
    print(f"respondent {r.backend} {r.model}: {r.administered} administrations ({r.repeats} per persona), "
          f"valid {100 * r.valid_rate:.1f}%")
    print("r(assigned, recovered): " + "  ".join(f"{t} {fmt(v)}" for t, v in r.per_trait.items()))
    print(f"overall r (all traits pooled): {fmt(r.overall_r)}   (n/a: the answers did not vary)")
    for f in r.failures[:5]:
        print(f"  failed: {f}")
    return 0


# ---------------------------------------------------------------------------------------- benchmarks

def _cases(settings: Settings, personas_arg: str, seed: int):
    import numpy as np

    from rlli.personas import find_preset
    from rlli.personas.describe import make_delivery
    from rlli.personas.injection import PROMPTS, Case
    from rlli.service import StudioService

    personas = [find_preset(n) for n in personas_arg.split(",") if n.strip()]
    report = StudioService(settings).run_round("\n".join(PROMPTS), seed)
    images = [np.asarray(o.image) for o in report.outputs]
    # each prompt twice: with its own image (a good delivery) and with the next prompt's image, at low
    # quality after a long wait (a bad one), so that a judge has room to move in both directions
    good = [make_delivery(p, im, quality=1.0, delay_s=3.0) for p, im in zip(report.prompts, images)]
    bad = [make_delivery(p, images[(i + 1) % len(images)], quality=0.4, delay_s=30.0)
           for i, p in enumerate(report.prompts)]
    return [Case(p, d) for p in personas for d in good + bad]


def _bench_injection(args) -> int:
    from dataclasses import replace

    from rlli.personas import PersonaError
    from rlli.personas.describe import describe_image, read_png
    from rlli.personas.injection import measure

    s = Settings()
    try:
        cases = _cases(s, args.personas, args.seed)
    except PersonaError as e:
        return fail(str(e))

    def injected(prompt, clean):  # same image, quality and delay; the description re-read for the new prompt
        return replace(clean, prompt=prompt, description=describe_image(read_png(clean.image_png), prompt))

    r = measure(cases, s, injected)
    if args.json:
        print_json(r)
        return 0
    print(f"{r['cases']} persona x image pairs, model {r['model']}, temperature {r['temperature']}, seed {r['seed']}")
    for way in ("defended", "naive"):
        w = r[way]
        print(f"{way:9s} clean mean score {w['clean_mean']}  valid {100 * w['clean_valid_rate']:.0f}%  "
              f"mean |shift| {w['mean_abs_shift']}")
        for kind, v in w["by_injection"].items():
            print(f"   {kind:12s} shift {v['mean_shift']!s:>7}  |shift| {v['mean_abs_shift']!s:>6}  changed "
                  f"{v['changed_rate']}  to 10 {v['to_ten_rate']}  valid {v['valid_rate']:.2f}")
    print(f"mean |shift| defended / naive: {r['abs_shift_ratio_defended_over_naive']}")
    return 0


def _bench_judge(args) -> int:
    """Latency of LLM ratings on this machine, and a second pass over the same ratings from the cache."""
    import statistics

    from rlli.personas import PersonaError
    from rlli.personas.llm_judge import LLMJudge

    s = Settings()
    try:
        cases = _cases(s, args.personas, args.seed)
    except PersonaError as e:
        return fail(str(e))
    judge = LLMJudge(s)
    judge.rate(cases[0].persona, cases[0].delivery)  # start the endpoint (and warm the embedded server)
    judge.cache = type(judge.cache)(s.llm_cache_size)
    t = time.perf_counter()
    first = [judge.rate(c.persona, c.delivery) for c in cases]
    cold = time.perf_counter() - t
    t = time.perf_counter()
    again = [judge.rate(c.persona, c.delivery) for c in cases]
    warm = time.perf_counter() - t
    lat = [r.latency_s for r in first]
    half = len(cases) // 2 // max(1, len({c.persona.name for c in cases}))
    good = [r.score for i, r in enumerate(first) if (i % (2 * half)) < half and r.score is not None]
    bad = [r.score for i, r in enumerate(first) if (i % (2 * half)) >= half and r.score is not None]
    r = {"ratings": len(cases), "model": judge.model, "endpoint_embedded": judge.client().endpoint.embedded,
         "llm_threads": s.llm_threads, "valid_rate": sum(x.status == "ok" for x in first) / len(first),
         "latency_mean_s": round(statistics.mean(lat), 4), "latency_median_s": round(statistics.median(lat), 4),
         "latency_max_s": round(max(lat), 4), "uncached_total_s": round(cold, 4), "cached_total_s": round(warm, 6),
         "cache_speedup": round(cold / warm, 1) if warm > 0 else None,
         "cached_same_scores": [a.score for a in first] == [b.score for b in again],
         "mean_score_good": round(statistics.mean(good), 3) if good else None,
         "mean_score_bad": round(statistics.mean(bad), 3) if bad else None,
         "score_counts": {str(k): sum(x.score == k for x in first) for k in range(1, 11) if any(x.score == k for x in first)}}
    if args.json:
        print_json(r)
        return 0
    where = f"embedded, {s.llm_threads} thread(s)" if r["endpoint_embedded"] else "remote"
    print(f"{r['ratings']} ratings by {r['model']} ({where})")
    print(f"latency per rating: mean {r['latency_mean_s']:.2f} s  median {r['latency_median_s']:.2f} s  "
          f"max {r['latency_max_s']:.2f} s   valid {100 * r['valid_rate']:.0f}%")
    print(f"same ratings again: {r['cached_total_s']:.4f} s from the cache vs {r['uncached_total_s']:.2f} s "
          f"(x{r['cache_speedup']}), same scores: {r['cached_same_scores']}")
    print(f"scores: {r['score_counts']}; mean for the matching image {r['mean_score_good']}, "
          f"for a wrong image at quality 0.4 after 30 s {r['mean_score_bad']}")
    return 0


# ---------------------------------------------------------------------------------------- registration

def register(commands) -> None:
    from rlli.commands.io import seed_int

    g = commands.top.add_parser("generate", help="one image from the configured backbone")
    g.add_argument("prompt")
    g.add_argument("--seed", type=seed_int, default=0)
    g.add_argument("--out", default="", help="PNG file (default generated-SEED.png)")
    g.set_defaults(func=_generate)

    j = commands.top.add_parser("judge", help="one persona's QoE rating of an image (generated when --image is not given)")
    j.add_argument("--persona", required=True, help="a preset's name (python -m rlli personas list)")
    j.add_argument("--prompt", required=True)
    j.add_argument("--image", default="", help="a PNG file; default: generate it from the prompt")
    j.add_argument("--judge", choices=["llm", "trait"], default="llm")
    j.add_argument("--seed", type=seed_int, default=0, help="seed of the generated image")
    j.add_argument("--quality", type=float, default=1.0, help="relative quality in [0, 1] the judge is told (default 1)")
    j.add_argument("--delay", type=float, default=None,
                   help="seconds the user waited (default: the generation time, or 0 with --image)")
    j.add_argument("--json", action="store_true", help="print score, reason, status, backend, model, latency_s")
    j.set_defaults(func=_judge)

    p = commands.top.add_parser("personas", help="preset personas, population profiles, the TIPI, persona fidelity")
    sub = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    pl = sub.add_parser("list", help="the preset personas")
    pl.add_argument("--json", action="store_true")
    ps = sub.add_parser("sample", help="N profiles drawn from TIPI population norms")
    ps.add_argument("n", type=int)
    ps.add_argument("--seed", type=seed_int, default=0)
    ps.add_argument("--json", action="store_true")
    pt = sub.add_parser("tipi", help="score ten TIPI answers (1..7) to Big Five in [0, 1]")
    pt.add_argument("answers", nargs="+", help="ten answers, item 1 to item 10")
    pt.add_argument("--json", action="store_true")
    pf = sub.add_parser("fidelity", help="every preset takes the TIPI N times; assigned vs recovered traits")
    pf.add_argument("--judge", choices=["llm", "trait"], default="llm", help="who answers (default llm)")
    pf.add_argument("--repeats", type=int, default=3)
    pf.add_argument("--seed", type=seed_int, default=0)
    pf.add_argument("--json", action="store_true", help="per_trait, overall_r, valid_rate, backend, model, ...")
    pf.add_argument("--details", action="store_true", help="with --json: every administration's answers")
    for x in (pl, ps, pt, pf):
        x.set_defaults(func=_personas)

    bi = commands.bench.add_parser("injection", help="score shift from prompt injections, defended vs naive judge")
    bi.add_argument("--personas", default="balanced,critical,agreeable", help="comma-separated preset names")
    bi.add_argument("--seed", type=seed_int, default=0)
    bi.add_argument("--json", action="store_true")
    bi.set_defaults(func=_bench_injection)
    bj = commands.bench.add_parser("judge", help="LLM rating latency here, and cached vs uncached")
    bj.add_argument("--personas", default="balanced,critical", help="comma-separated preset names")
    bj.add_argument("--seed", type=seed_int, default=0)
    bj.add_argument("--json", action="store_true")
    bj.set_defaults(func=_bench_judge)
