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
    from rlli.prompts import parse_prompts
    from rlli.service import requests_from, run_round

    t = time.perf_counter()
    prompts = parse_prompts(prompt, 1, settings.max_prompt_chars)
    report = run_round(requests_from(prompts, seed), settings)
    return report.requests[0].image, time.perf_counter() - t


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
    from rlli.personas import PersonaError
    from rlli.personas.fidelity import run_fidelity

    if not 4 <= args.profiles <= 2000:
        return fail("--profiles must be between 4 and 2000")
    if not 0 <= args.behavioural <= args.profiles:
        return fail("--behavioural must be between 0 and --profiles")
    log = None if args.json else (lambda m: print(m, flush=True))
    try:
        r = run_fidelity(args.profiles, args.judge, Settings(), seed=args.seed, norm_set=args.norms,
                         behavioural=args.behavioural, log=log if args.details else None)
    except PersonaError as e:
        return fail(str(e))
    if args.json:
        d = r.as_dict()
        if not args.details:
            d.pop("recovered")
        print_json(d)
        return 0
    est = lambda e: "  n/a" if e.get("r") is None else f"{e['r']:+.3f} [{e['low']:+.2f}, {e['high']:+.2f}]"  # noqa: E731
    print(f"respondent {r.backend} {r.model}: {r.profiles} profiles from the {r.norm_set} norms, instrument "
          f"{r.instrument}, valid {100 * r.valid_rate:.1f}%")
    if r.note:
        print(f"note: {r.note}")
    for t, e in r.per_trait.items():
        print(f"  r(assigned, recovered) {t:18s} {est(e)}")
    m = r.mtmm
    if m:
        print(f"MTMM: convergent {m['convergent']}  discriminant {m['discriminant']}  gap {m['gap']} "
              f"[{m['gap_low']}, {m['gap_high']}]")
    b = r.behavioural
    if b:
        print(f"behavioural ({b['complete']} of {b['profiles']} profiles complete): delay slope vs neuroticism "
              f"{est(b['delay_slope_vs_neuroticism'])} (expected negative); quality slope vs conscientiousness "
              f"{est(b['quality_slope_vs_conscientiousness'])} (expected positive)")
    for f in r.failures[:5]:
        print(f"  failed: {f}")
    return 0


# ---------------------------------------------------------------------------------------- benchmarks

def _images(settings: Settings, prompts: list[str], seed: int):
    """One image per prompt from the configured backbone, generated independently (seeds seed + i)."""
    import numpy as np

    from rlli.diffusion import get_backbone, plan_from
    from rlli.diffusion.engine import Engine, Request, independent_groups

    requests = [Request(p, seed=seed + i, request_id=str(i)) for i, p in enumerate(prompts)]
    out = Engine(get_backbone(settings)).run(requests, independent_groups(len(requests)), plan_from(settings))
    return [np.asarray(o.image) for o in out.outputs]


def _cases(settings: Settings, personas_arg: str, seed: int, n_prompts: int = 0):
    from rlli.personas import find_preset
    from rlli.personas.describe import make_delivery
    from rlli.personas.injection import PROMPTS, Case

    personas = [find_preset(n) for n in personas_arg.split(",") if n.strip()]
    prompts = list(PROMPTS[:n_prompts] if n_prompts else PROMPTS)
    images = _images(settings, prompts, seed)
    # each prompt twice: with its own image (a good delivery) and with the next prompt's image, at low
    # quality after a long wait (a bad one), so that a judge has room to move in both directions
    good = [make_delivery(p, im, quality=1.0, delay_s=3.0) for p, im in zip(prompts, images)]
    bad = [make_delivery(p, images[(i + 1) % len(images)], quality=0.4, delay_s=30.0) for i, p in enumerate(prompts)]
    # one delivery's raters one after another (the order the server's prompt cache likes)
    return [Case(p, d) for d in good + bad for p in personas]


def _bench_injection(args) -> int:
    from dataclasses import replace

    from rlli.personas import PersonaError
    from rlli.personas.describe import describe_image, read_png
    from rlli.personas.injection import measure

    s = Settings()
    if not 1 <= args.prompts <= 4:
        return fail("--prompts must be between 1 and 4")
    try:
        cases = _cases(s, args.personas, args.seed, args.prompts)
    except PersonaError as e:
        return fail(str(e))

    def injected(prompt, clean):  # same image, quality and delay; the description re-read for the new prompt
        return replace(clean, prompt=prompt, description=describe_image(read_png(clean.image_png), prompt))

    good = [i < len(cases) // 2 for i in range(len(cases))]  # _cases lists the good deliveries first
    r = measure(cases, s, injected, good)
    if args.json:
        print_json(r)
        return 0
    print(f"{r['cases']} persona x image pairs, model {r['model']}, temperature {r['temperature']}, seed {r['seed']}")
    pc = r["defended"]["positive_control"]["shift"]
    print(f"positive control (the request asks for another colour than the image shows): shift {pc['mean']} "
          f"[{pc['low']}, {pc['high']}] over {pc['n']} pairs -> the judge "
          f"{'reads' if r['judge_reads_the_request'] else 'does NOT clearly read'} the request")
    for way in ("defended", "naive"):
        w = r[way]
        print(f"{way:9s} clean mean score {w['clean_mean']}  valid {100 * w['clean_valid_rate']:.0f}%  "
              f"mean |shift| {w['mean_abs_shift']}")
        for kind, v in w["by_injection"].items():
            ci = v["shift"]
            print(f"   {kind:12s} shift {v['mean_shift']!s:>7} [{ci['low']}, {ci['high']}]  |shift| {v['mean_abs_shift']!s:>6}"
                  f"  changed {v['changed_rate']}  to 10 {v['to_ten_rate']}  valid {v['valid_rate']:.2f}")
    print(f"mean |shift| defended / naive: {r['abs_shift_ratio_defended_over_naive']}")
    return 0


def _bench_judge(args) -> int:
    """LLM ratings here: valid rate, seconds per rating one at a time and with the round's ratings sent
    concurrently (same ratings, same run), and a pass answered from the cache."""
    import statistics

    from rlli.personas import PersonaError
    from rlli.personas.llm_judge import LLMJudge
    from rlli.personas.server import slots_for

    s = Settings()
    if not 1 <= args.prompts <= 4:
        return fail("--prompts must be between 1 and 4")
    try:
        cases = _cases(s, args.personas, args.seed, args.prompts)
    except PersonaError as e:
        return fail(str(e))
    pairs = [(c.persona, c.delivery) for c in cases]
    judge = LLMJudge(s)
    warm = judge.rate(pairs[0][0], pairs[0][1])  # start the endpoint (every embedded slot) before timing
    if warm.status in ("unavailable", "error"):
        return fail(f"the LLM endpoint cannot rate: {warm.reason}")

    def fresh() -> LLMJudge:
        j = LLMJudge(s)
        j._client = judge.client()  # the same endpoint and slots, an empty cache
        return j

    one = fresh()
    t = time.perf_counter()
    sequential = [one.rate(p, d) for p, d in pairs]
    seq_s = time.perf_counter() - t
    many = fresh()
    t = time.perf_counter()
    concurrent = many.rate_many(pairs)
    con_s = time.perf_counter() - t
    t = time.perf_counter()
    again = many.rate_many(pairs)
    cached_s = time.perf_counter() - t
    everything = sequential + concurrent
    ok = [r for r in everything if r.status == "ok"]
    n = len(pairs)
    half = n // 2
    good = [r.score for r in concurrent[:half] if r.score is not None]
    bad = [r.score for r in concurrent[half:] if r.score is not None]
    expected = [r.extras.get("expected_score") for r in concurrent if r.extras.get("expected_score") is not None]
    client = judge.client()
    r = {"ratings": n, "model": judge.model, "endpoint_embedded": client.endpoint.embedded,
         "slots": len(client.endpoint.slots) or None, "slots_for_settings": slots_for(s) if client.endpoint.embedded else None,
         "llm_concurrency": s.llm_concurrency, "llm_threads": s.llm_threads,
         "valid_rate": round(len(ok) / len(everything), 4), "valid": len(ok), "attempted": len(everything),
         "finish_reasons": {k: sum(x.extras.get("finish_reason") == k for x in everything)
                            for k in sorted({str(x.extras.get("finish_reason")) for x in everything})},
         "retried": sum(x.extras.get("attempts", 1) > 1 for x in everything),
         "s_per_rating_sequential": round(seq_s / n, 4), "s_per_rating_concurrent": round(con_s / n, 4),
         "concurrency_speedup": round(seq_s / con_s, 3) if con_s > 0 else None,
         "sequential_total_s": round(seq_s, 3), "concurrent_total_s": round(con_s, 3), "cached_total_s": round(cached_s, 6),
         "same_scores_sequential_vs_concurrent": [a.score for a in sequential] == [b.score for b in concurrent],
         "cached_same_scores": [a.score for a in concurrent] == [b.score for b in again],
         "latency_median_s": round(statistics.median(x.latency_s for x in sequential), 4),
         "prompt_tokens_mean": round(statistics.mean(x.extras.get("prompt_tokens") or 0 for x in sequential), 1),
         "mean_score_good": round(statistics.mean(good), 3) if good else None,
         "mean_score_bad": round(statistics.mean(bad), 3) if bad else None,
         "expected_score_available": len(expected), "perception": sorted({x.perception for x in everything}),
         "score_counts": {str(k): sum(x.score == k for x in concurrent) for k in range(1, 11)
                          if any(x.score == k for x in concurrent)},
         "failures": [x.reason[:200] for x in everything if x.status != "ok"][:5],
         "settings": s.public_dict()}
    if args.json:
        print_json(r)
        return 0
    where = f"embedded, {r['slots']} slot(s) x {s.llm_threads} thread(s)" if r["endpoint_embedded"] else "remote"
    print(f"{n} ratings by {r['model']} ({where}), perception {', '.join(r['perception'])}")
    print(f"valid {r['valid']}/{r['attempted']} ({100 * r['valid_rate']:.1f}%), retried {r['retried']}, "
          f"finish reasons {r['finish_reasons']}")
    print(f"seconds per rating: one at a time {r['s_per_rating_sequential']:.2f}  concurrent "
          f"(RLLI_LLM_CONCURRENCY={s.llm_concurrency}) {r['s_per_rating_concurrent']:.2f}  (x{r['concurrency_speedup']})")
    print(f"same scores either way: {r['same_scores_sequential_vs_concurrent']}; from the cache "
          f"{r['cached_total_s']:.4f} s, same scores: {r['cached_same_scores']}")
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
    pf = sub.add_parser("fidelity", help="profiles sampled from the norms answer the Mini-IPIP and rate a 2x2 "
                                         "quality x delay design: per-trait r with CIs, MTMM gap, behavioural slopes")
    pf.add_argument("--judge", choices=["llm", "trait"], default="llm", help="who answers (default llm)")
    pf.add_argument("--profiles", type=int, default=120, help="profiles sampled from the norms (default 120)")
    pf.add_argument("--behavioural", type=int, default=30, help="profiles that also rate the 2x2 design (default 30)")
    pf.add_argument("--norms", default="", help="norm set: gosling2003 (default) or web2014")
    pf.add_argument("--seed", type=seed_int, default=0)
    pf.add_argument("--json", action="store_true", help="profiles, per_trait, overall_r, mtmm_gap, behavioural, ...")
    pf.add_argument("--details", action="store_true", help="every profile's answers (with --json: in the output)")
    for x in (pl, ps, pt, pf):
        x.set_defaults(func=_personas)

    bi = commands.bench.add_parser("injection", help="score shift from prompt injections, defended vs naive judge")
    bi.add_argument("--personas", default="balanced,critical,agreeable", help="comma-separated preset names")
    bi.add_argument("--prompts", type=int, default=4, help="prompts (1-4); each gives a good and a bad delivery")
    bi.add_argument("--seed", type=seed_int, default=0)
    bi.add_argument("--json", action="store_true")
    bi.set_defaults(func=_bench_injection)
    bj = commands.bench.add_parser("judge", help="LLM ratings here: valid rate, seconds per rating one at a time vs "
                                                 "concurrent, and from the cache")
    bj.add_argument("--personas", default="balanced,critical,open", help="comma-separated preset names")
    bj.add_argument("--prompts", type=int, default=2, help="prompts (1-4); each gives a good and a bad delivery")
    bj.add_argument("--seed", type=seed_int, default=0)
    bj.add_argument("--json", action="store_true")
    bj.set_defaults(func=_bench_judge)
