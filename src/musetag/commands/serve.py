"""``musetag serve MODEL``: the HTTP tagging service and its web page."""
from __future__ import annotations

import argparse

DEFAULT_QUEUE = 32  # the same as musetag.serve.app's (not imported here: FastAPI is an optional extra)
DEFAULT_QUEUE_TIMEOUT = 60.0


def register(subparsers) -> None:
    from musetag.commands import HelpFormatter, port_number

    p = subparsers.add_parser(
        "serve",
        help="serve a model package over HTTP (API + web page)",
        description=(
            "Serve one or more model packages with FastAPI + uvicorn: POST /v1/tag (multipart field 'file' or the "
            "raw body; ?segments=true adds every window's scores and times, ?model=ID picks a model), GET /v1/tags, "
            "GET /v1/models, GET /healthz, OpenAPI docs at /docs, and a web page at / to drop a file, "
            "play it and see its tags. Uploads beyond --max-upload-mb get 413, undecodable ones 422, a "
            "decode running past --decode-timeout is stopped (422), an upload not received within --body-timeout gets 408 (a client that disconnects mid-upload is logged in one line). When all --max-concurrency "
            "decoders are busy a request waits its turn (at most --queue waiting, each at most --queue-timeout s) and "
            "gets 503 with Retry-After only when the queue is full or its wait ran out. With --api-key (or "
            "$MUSETAG_API_KEY) every /v1/* request needs 'Authorization: Bearer KEY' (401 otherwise; /healthz stays "
            "open); listening on a non-loopback --host without a key needs --allow-anonymous."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", nargs="*", default=["mtg-jamendo-baseline"],
                   help="model package folder or archive (from `musetag package`), or a pretrained name "
                        "(`musetag models --pretrained`; pulled into the cache on first use). Several: the page "
                        "lets the user pick one or see them side by side; the API takes ?model=ID (GET /v1/models)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=port_number, default=8000, help="TCP port")
    p.add_argument("--max-upload-mb", type=float, default=50.0, help="largest accepted upload")
    p.add_argument("--max-concurrency", type=int, default=2, help="uploads decoded at the same time (decoder processes)")
    p.add_argument("--queue", type=int, default=DEFAULT_QUEUE,
                   help="requests that may wait for a busy decoder; beyond that they get 503 with Retry-After")
    p.add_argument("--queue-timeout", type=float, default=DEFAULT_QUEUE_TIMEOUT,
                   help="seconds a request may wait for a decoder before it gets 503 with Retry-After")
    p.add_argument("--decode-timeout", type=float, default=60.0, help="seconds one upload may take to decode")
    p.add_argument("--body-timeout", type=float, default=120.0,
                   help="seconds a client may take to send its whole upload; a stalled or trickling body gets 408")
    p.add_argument("--top-k", type=int, default=10, help="default number of top tags in responses")
    p.add_argument("--threshold", default=None, help="'tuned' or a probability (default: tuned if available, else 0.5)")
    p.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                   help="network runtime, as for `musetag tag`: onnx runs the exported graph on onnxruntime with numpy "
                        "features (no PyTorch in the server or its decoders); torch: PyTorch; auto: onnx for a plain "
                        "model on the CPU when onnxruntime is installed, else torch")
    p.add_argument("--similar-index", default=None, metavar="EMBEDDINGS",
                   help="enable POST /v1/similar over these embeddings (`musetag embed` with the same MODEL; "
                        ".npy, .parquet or a folder saved by `musetag similar --save-index`)")
    p.add_argument("--mood-index", default=None, metavar="SCORES",
                   help="enable GET /v1/moods?tags=happy,-sad over this tag-score table (`musetag tag ... --out "
                        "scores.csv|.jsonl|.parquet`)")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="require 'Authorization: Bearer KEY' on every /v1/* request (default: $MUSETAG_API_KEY, "
                        "else no key; the variable keeps the key out of the process list); /healthz and the page "
                        "stay open and the page asks for the key")
    p.add_argument("--allow-anonymous", action="store_true",
                   help="allow listening on a non-loopback --host (e.g. 0.0.0.0) without an API key")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    # a long-running server keeps glibc's adaptive thresholds and trims after each request (musetag._allocator)
    p.set_defaults(func=run, allocator="server")


def run(args: argparse.Namespace) -> int:
    from musetag.serve.app import serve

    serve(
        args.model or ["mtg-jamendo-baseline"],
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        max_upload_mb=args.max_upload_mb,
        max_concurrency=args.max_concurrency,
        queue=args.queue,
        queue_timeout=args.queue_timeout,
        api_key=args.api_key,
        allow_anonymous=args.allow_anonymous,
        decode_timeout=args.decode_timeout,
        body_timeout=args.body_timeout,
        top_k=args.top_k,
        threshold=args.threshold,
        backend=args.backend,
        similar_index=args.similar_index,
        mood_index=args.mood_index,
    )
    return 0
