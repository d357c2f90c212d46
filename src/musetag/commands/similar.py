"""``musetag similar INDEX QUERY``: tracks that sound like a query, or that match a mood."""
from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    from musetag.commands import HelpFormatter

    p = subparsers.add_parser(
        "similar",
        help="find the tracks closest to a query audio (embeddings) or to a mood (tag scores)",
        description=(
            "Similarity search. INDEX is an embeddings file from `musetag embed` (or a folder saved with "
            "--save-index); QUERY is an audio file (embedded with the index's model package, or --model) or "
            "a track of the index. With --mood, INDEX is a tag-score table from `musetag tag` (or embeddings "
            "written with `musetag embed --with-scores`) and tracks are "
            "ranked by how close their mood profile (tag scores standardised over the catalogue) is to the "
            "query's; with --tags no QUERY is needed: tracks scoring highest on those tags "
            "(e.g. --tags happy,energetic or --tags calm,-sad or --tags happy:2,film:0.5). Cosine search is "
            "exact with numpy; --backend faiss or hnswlib (when installed) builds an approximate HNSW index "
            "for millions of tracks (auto: exact up to 200,000 tracks)."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("index", metavar="INDEX", help="embeddings (.npy/.parquet), a saved index folder, or tag scores")
    p.add_argument("queries", metavar="QUERY", nargs="*", help="audio file(s) or track(s) of the index")
    p.add_argument("--k", "-k", type=int, default=10, help="how many tracks to return per query")
    p.add_argument("--model", default=None, help="model package to embed/tag queries (default: recorded in the index)")
    p.add_argument("--mood", action="store_true", help="INDEX is a tag-score table; compare mood profiles")
    p.add_argument("--tags", default=None, help="mood search by tags: happy,-sad,calm:0.5 (implies --mood)")
    p.add_argument("--backend", choices=("auto", "exact", "faiss", "hnswlib"), default=None,
                   help="search backend (default: the saved index's, else auto)")
    p.add_argument("--save-index", default=None, metavar="DIR",
                   help="save the built index (vectors + ANN graph) to DIR for fast reuse")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format")
    p.add_argument("--device", default="cpu", help="torch device for embedding queries")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musetag.errors import ConfigError
    from musetag.tag.similarity import MoodIndex, SimilarityIndex, embedder_for, find_similar, parse_tag_weights

    if args.k < 1:
        raise ConfigError(f"--k must be at least 1, got {args.k}")
    answers: list[tuple[str, list]] = []
    if args.tags or args.mood:
        moods = MoodIndex.from_file(args.index, backend=args.backend or "auto")
        if args.tags:
            weights = parse_tag_weights(args.tags)
            answers.append((args.tags, moods.search_tags(weights, k=args.k)))
        tagger = None
        for query in args.queries:
            known = moods.index.find(query)
            if known is not None:
                answers.append((query, moods.search_track(known, k=args.k)))
                continue
            if tagger is None:
                tagger = _tagger(args.model, moods.tags, args.device)
            result = tagger.tag(query)
            answers.append((query, moods.search_scores(result.scores_array, k=args.k, exclude=[query])))
        if not args.tags and not args.queries:
            raise ConfigError("give a QUERY audio or --tags for a mood search")
    else:
        if not args.queries:
            raise ConfigError("give at least one QUERY (an audio file or a track of the index), or use --tags")
        index = SimilarityIndex.load(args.index, backend=args.backend)
        embedder = None
        for query in args.queries:
            if index.find(query) is None and embedder is None:
                embedder = embedder_for(index, args.model, device=args.device)
            answers.append((query, find_similar(index, query, k=args.k, embedder=embedder)))
        if args.save_index:
            index.save(args.save_index)
            print(f"saved the index ({len(index)} tracks, {index.backend}) to {args.save_index}", file=sys.stderr)
    _print(answers, args.format)
    return 0


def _tagger(model, tags, device):
    from musetag.errors import ConfigError
    from musetag.inference.tagger import Tagger

    if not model:
        raise ConfigError("--mood with a query audio needs the model that wrote the tag scores: --model PACKAGE")
    tagger = Tagger.from_package(model, device=device)
    if list(tagger.tags) != list(tags):
        raise ConfigError(
            f"model package {model} has other tags than the tag-score table ({len(tagger.tags)} vs {len(tags)}); "
            "use the package that wrote the table"
        )
    return tagger


def _print(answers, fmt: str) -> None:
    if fmt == "json":
        docs = [{"query": q, "matches": [m.to_dict() for m in ms]} for q, ms in answers]
        print(json.dumps(docs[0] if len(docs) == 1 else docs, ensure_ascii=False, indent=1))
        return
    if fmt == "csv":
        import csv

        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["query", "rank", "path", "score"])
        for q, ms in answers:
            for m in ms:
                w.writerow([q, m.rank, m.path, f"{m.score:.6f}"])
        return
    for q, ms in answers:
        print(f"# {q}")
        for m in ms:
            print(f"{m.rank:>4}  {m.score:8.4f}  {m.path}")
