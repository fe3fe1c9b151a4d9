"""`unifiedreward serve`: run the reward service (docs/service.md) in front of one judge.

The judge is a checkpoint loaded in-process (``--model``, on ``--device``) or vLLM / SGLang replicas
(``--server URL[,URL...]``). Routes: ``/v1/score``, ``/v1/compare``, ``/v1/group`` (our JSON API), ``/v1/scorer``
(Flow-GRPO / verl-omni HTTP scorers), ``/get_reward`` (OpenRLHF's remote reward model), ``/health``, ``/metrics``.
Concurrent requests are batched into the judge. It binds 127.0.0.1 unless ``--host`` says otherwise; the bearer key
comes from ``$UNIFIEDREWARD_SERVICE_API_KEY`` (kept out of ``ps``) or ``--api-key``.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

from unifiedreward.cli.common import load_judge
from unifiedreward.cli.help import CommandParser, examples

logger = logging.getLogger("unifiedreward.serve")

API_KEY_VARIABLE = "UNIFIEDREWARD_SERVICE_API_KEY"  # not UNIFIEDREWARD_API_KEY: that one goes to --server replicas
DEFAULT_PORT = 8000


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``serve``."""
    from unifiedreward.service.config import ServiceConfig

    defaults = ServiceConfig()
    parser = subparsers.add_parser(
        "serve",
        help="run the reward service (JSON API, Flow-GRPO / verl-omni scorer, OpenRLHF remote RM) over a judge",
        description=__doc__,
        epilog=examples(
            "unifiedreward serve --model toy-world/reward-qwen2_5_vl --device cpu --mode logit --port 8000",
            "unifiedreward serve --server http://127.0.0.1:8080,http://127.0.0.1:8081 --mode logit --media-root /data",
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="checkpoint path (or hub id) loaded in-process with transformers")
    source.add_argument("--server", metavar="URL[,URL...]", help="OpenAI-compatible judge server(s) (vLLM replicas)")
    parser.add_argument("--server-model", help="model name to request from --server")
    parser.add_argument(
        "--checkpoint", metavar="HUB_ID",
        help="the released checkpoint the judge is (a renamed copy, or --server): its templates and chat options",
    )
    parser.add_argument(
        "--server-api-key", help="bearer key for --server (default $UNIFIEDREWARD_API_KEY, $OPENAI_API_KEY)"
    )
    parser.add_argument("--device", default=None, help="--model: torch device (cpu, cuda, cuda:1; default: auto)")
    parser.add_argument("--dtype", default="auto", help="--model: weights dtype (auto, bf16, fp16, fp32)")
    parser.add_argument("--batch-size", type=int, default=8, help="--model: items per forward pass")
    parser.add_argument("--max-new-tokens", type=int, help="generation budget (default: the template's)")
    parser.add_argument("--mode", choices=("generate", "logit"), default=defaults.mode, help="judge mode")
    parser.add_argument("--host", default=defaults.host, help="address to bind (0.0.0.0 exposes it: set a key)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (0: any free port)")
    parser.add_argument("--api-key", help=f"required bearer key (default ${API_KEY_VARIABLE}, which stays out of ps)")
    parser.add_argument("--allow-pickle", action="store_true", help="accept pickled /v1/scorer bodies (127.0.0.1 only)")
    parser.add_argument("--media-root", help="folder that request media paths are read from (none: paths refused)")
    parser.add_argument("--max-batch", type=int, default=defaults.max_batch, help="items per judge call at most")
    parser.add_argument("--max-wait-ms", type=float, default=defaults.max_wait_ms, help="wait for more items (ms)")
    parser.add_argument("--max-queue", type=int, default=defaults.max_queue, help="items waiting at most (more: 429)")
    parser.add_argument("--workers", type=int, help="judge calls at once (default: 1 --model, 2 --server)")
    parser.add_argument("--deadline", type=float, default=defaults.request_deadline_s, help="seconds per request")
    parser.add_argument("--max-body-mb", type=float, default=defaults.max_body_bytes / 2**20, help="request body limit")
    parser.add_argument("--max-media", type=int, default=defaults.max_media_per_request, help="media per request")
    parser.add_argument("--score-template", default=defaults.score_template, help="/v1/score default template")
    parser.add_argument("--compare-template", default=defaults.compare_template, help="/v1/compare default template")
    parser.add_argument("--scorer-template", default=defaults.scorer_template, help="/v1/scorer template")
    parser.add_argument("--get-reward-template", default=defaults.get_reward_template, help="/get_reward template")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info", help="log level")
    parser.set_defaults(func=run)
    return parser


def service_config(args: argparse.Namespace):
    """The `ServiceConfig` of the command line (``ValueError`` for a refused combination)."""
    from reward_core.backends.http_client import redact_url
    from unifiedreward.service.config import ServiceConfig

    shown = args.model or ",".join(redact_url(url.strip()) for url in args.server.split(","))  # /health is open
    return ServiceConfig(
        host=args.host, port=args.port, api_key=args.api_key or os.environ.get(API_KEY_VARIABLE) or None,
        allow_pickle=args.allow_pickle, media_root=args.media_root, model_name=shown,
        mode=args.mode, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
        workers=args.workers, request_deadline_s=args.deadline,
        max_body_bytes=int(args.max_body_mb * 2**20), max_media_per_request=args.max_media,
        score_template=args.score_template, compare_template=args.compare_template,
        scorer_template=args.scorer_template, get_reward_template=args.get_reward_template,
    )  # fmt: skip


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(2048)
    return sock


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from unifiedreward.service.app import create_app
    from unifiedreward.service.config import LOOPBACK

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = service_config(args)
    except ValueError as error:
        print(f"unifiedreward serve: {error}", file=sys.stderr)
        return 2
    if config.host not in LOOPBACK and config.api_key is None:
        logger.warning("bound to %s without an API key: anyone who can reach it can use the judge", config.host)
    judge = load_judge(
        args.model, args.server, args.server_model, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens, api_key=args.server_api_key, family=args.checkpoint,
    )  # fmt: skip
    app = create_app(judge, config)
    try:
        sock = bind(config.host, config.port)
    except OSError as error:
        print(f"unifiedreward serve: cannot listen on {config.host}:{config.port}: {error}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    logger.info("unifiedreward serve: %s (%s mode) on http://%s:%d (key %s, pickle %s, media root %s)",
                config.model_name, config.mode, shown, port, "required" if config.api_key else "off",
                "allowed" if config.allow_pickle else "refused", config.media_root or "none")
    server = uvicorn.Server(uvicorn.Config(app, log_level=args.log_level, timeout_graceful_shutdown=5))
    server.run(sockets=[sock])
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run this subcommand alone (``python -m unifiedreward.cli.serve --model PATH ...``)."""
    parser = CommandParser(prog="unifiedreward")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", *(argv or [])])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
