"""Commands of the store and the agreement analytics (registered into ``python -m rlli``):

``agreement [--json] [--figures DIR]``, ``rejudge --backend B [--model M]``, ``export --format F [--out DIR]``,
``store info``, ``store delete-participant ID --yes`` and ``bench store [--json]``.
The database is ``RLLI_DATABASE_URL`` (default: the SQLite file db/rlli.sqlite3), images ``RLLI_DATA_DIR``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from rlli.commands.io import fail, print_json
from rlli.config import Settings
from rlli.store.db import StoreError


def _guarded(handler: Callable[[object], int]) -> Callable[[object], int]:
    """User-caused failures (a broken URL, a locked or newer database, bad values) -> 'error: ...', exit 2."""

    def run(args) -> int:
        from rlli.session.rejudge import RejudgeError

        try:
            return handler(args)
        except (StoreError, RejudgeError, ValueError, OSError) as e:
            return fail(str(e))

    return run


def _open(args=None):
    from rlli.store.repository import Store

    return Store.from_settings(Settings())


def _agreement(args) -> int:
    from rlli.analysis.agreement import agreement_table, format_table, pair_ratings

    settings = Settings()
    resamples = args.resamples or settings.bootstrap_resamples
    with _open() as store:
        frame = store.rating_frame()
    rows = agreement_table(frame, resamples=resamples, seed=args.seed)
    if args.figures:
        from rlli.analysis.figures import all_figures

        out = Path(args.figures)
        out.mkdir(parents=True, exist_ok=True)
        for name, fig in all_figures(pair_ratings(frame), rows, seed=args.seed).items():
            fig.write_html(out / f"agreement-{name}.html", include_plotlyjs="cdn")
    if args.json:
        print(json.dumps({"ratings": len(frame), "resamples": resamples, "seed": args.seed,
                          "rows": [r.as_dict() for r in rows]}, indent=2))
        return 0
    print(f"{len(frame)} ratings; 95% intervals from {resamples} bootstrap resamples of people (seed {args.seed})")
    print(format_table(rows))
    if args.figures:
        print(f"figures written to {args.figures}/agreement-*.html")
    return 0


def _personas(spec: str):
    from rlli.personas import find_preset, load_presets

    names = [s.strip() for s in spec.split(",") if s.strip()]
    own, shuffled = "own" in names, "shuffled" in names
    presets = []
    for n in names:
        if n == "presets":
            presets += load_presets()
        elif n not in ("own", "shuffled"):
            presets.append(find_preset(n))
    if not own and not presets and not shuffled:
        raise ValueError("--personas names nobody: use own, presets, shuffled, or preset names separated by commas")
    return own, presets, shuffled


def _rejudge(args) -> int:
    from rlli.personas import get_judge
    from rlli.session.rejudge import rejudge

    settings = Settings()
    own, presets, shuffled = _personas(args.personas)
    judge = get_judge(args.backend, settings, model=args.model)
    workers = args.workers or (settings.llm_concurrency if args.backend == "llm" else 1)
    with _open() as store:
        report = rejudge(store, judge, presets, own=own, limit=args.limit, workers=workers, progress=not args.json,
                         shuffled=shuffled)
    if args.json:
        print_json(report.as_dict())
        return 0
    print(f"{report.backend}/{report.model}: {report.generations} generations rated by people, {report.planned} "
          f"(persona, generation) pairs, {report.already_rated} already rated, {report.stored} stored now "
          f"in {report.seconds:.1f} s")
    if report.statuses:
        print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(report.statuses.items())))
    return 0


def _export(args) -> int:
    from rlli.store.export import export

    with _open() as store:
        res = export(store, Path(args.out), args.format, participant_id=args.participant, images=not args.no_images)
    print(f"{res.rows} ratings -> {res.table}")
    if res.imagefolder:
        print(f"{res.images} images + metadata.jsonl -> {res.imagefolder} "
              "(datasets.load_dataset('imagefolder', data_dir=...))")
    return 0


def _store(args) -> int:
    from rlli.store.migrate import current_revision

    with _open() as store:
        if args.action == "delete-participant":
            if not args.yes:
                return fail("deleting a participant removes their ratings, requests and images for good; add --yes")
            counts = store.delete_participant(args.participant)
            if not counts["participants"]:
                return fail(f"no participant {args.participant!r}")
            print(json.dumps(counts))
            return 0
        info = {"url": store.url, "engine": store.dialect, "revision": current_revision(store.engine),
                "data_dir": str(store.data_dir), "rows": store.counts()}
    print_json(info)
    return 0


def _bench(args) -> int:
    from rlli.store.bench import BenchConfig, bench_store

    if min(args.threads, args.ratings, args.batch) < 1 or args.naive_ratings < 1:
        return fail("--threads, --ratings, --naive-ratings and --batch must be at least 1")
    cfg = BenchConfig(threads=args.threads, per_thread=args.ratings, batch=args.batch,
                      naive_per_thread=args.naive_ratings, seed=args.seed)
    r = bench_store(args.url, cfg)
    if args.json:
        print_json(r)
        return 0
    print(f"{r['engine']}: {r['threads']} writer threads x {r['ratings_per_thread']} ratings with their generations "
          f"({r['cpu']})")
    print(f"batched ({r['batch']} per transaction): {r['found']}/{r['expected']} found, {r['lost']} lost, "
          f"{r['duplicates_rejected']}/{r['duplicates_attempted']} duplicates rejected, {r['per_second']:.0f} ratings/s")
    print(f"naive (one per transaction):  {r['naive_found']}/{r['naive_expected']} found, "
          f"{r['per_second_naive']:.0f} ratings/s  -> batched is {r['speedup']:.2f}x")
    return 0


def register(commands) -> None:
    from rlli.commands.io import seed_int

    ag = commands.top.add_parser("agreement", help="human vs agent agreement from the rating store")
    ag.add_argument("--json", action="store_true", help="print JSON: {ratings, resamples, seed, rows: [...]}")
    ag.add_argument("--resamples", type=int, default=None, help="bootstrap resamples (default RLLI_BOOTSTRAP_RESAMPLES)")
    ag.add_argument("--seed", type=seed_int, default=0)
    ag.add_argument("--figures", default="", help="also write the plotly figures as HTML into this folder")
    ag.set_defaults(func=_guarded(_agreement))

    rj = commands.top.add_parser("rejudge", help="agents rate the stored generations that people rated (resumable)")
    rj.add_argument("--backend", required=True, choices=["llm", "trait"])
    rj.add_argument("--model", default=None, help="LLM model name (default RLLI_LLM_MODEL)")
    rj.add_argument("--personas", default="own,presets",
                    help="who rates: own (each person's own Big-Five), presets (all), shuffled (the control: each "
                         "person's images rated by an agent given another person's Big-Five), or preset names; "
                         "comma-separated")
    rj.add_argument("--limit", type=int, default=None, help="only the first N generations")
    rj.add_argument("--workers", type=int, default=None, help="ratings in flight (default RLLI_LLM_CONCURRENCY)")
    rj.add_argument("--json", action="store_true")
    rj.set_defaults(func=_guarded(_rejudge))

    ex = commands.top.add_parser("export", help="ratings with all context + a Hugging Face imagefolder")
    ex.add_argument("--format", required=True, choices=["csv", "jsonl", "parquet"])
    ex.add_argument("--out", default="export", help="output folder (default ./export)")
    ex.add_argument("--participant", default=None, help="only this participant's ratings")
    ex.add_argument("--no-images", action="store_true", help="skip the imagefolder")
    ex.set_defaults(func=_guarded(_export))

    st = commands.top.add_parser("store", help="the rating store: info, delete a participant (admin)")
    st_sub = st.add_subparsers(dest="action", required=True, metavar="ACTION")
    st_sub.add_parser("info", help="URL (no password), engine, schema revision, row counts").set_defaults(
        func=_guarded(_store))
    dp = st_sub.add_parser("delete-participant", help="remove a participant and all their data")
    dp.add_argument("participant")
    dp.add_argument("--yes", action="store_true", help="really delete")
    dp.set_defaults(func=_guarded(_store))

    bs = commands.bench.add_parser("store", help="concurrent rating writes, batched vs one per transaction")
    bs.add_argument("--url", default=None, help="a PostgreSQL server URL (fresh databases are created there); "
                                                "default: fresh SQLite files")
    bs.add_argument("--threads", type=int, default=8)
    bs.add_argument("--ratings", type=int, default=1000, help="ratings per thread (default 1000)")
    bs.add_argument("--naive-ratings", type=int, default=1000, help="ratings per thread the naive way (default 1000)")
    bs.add_argument("--batch", type=int, default=50, help="generations and ratings per transaction (default 50)")
    bs.add_argument("--seed", type=seed_int, default=0)
    bs.add_argument("--json", action="store_true")
    bs.set_defaults(func=_guarded(_bench))
