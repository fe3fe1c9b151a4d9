"""Every fenced shell and Python block of README.md and docs/*.md runs as written, on the toy world.

Blocks are extracted with pytest-codeblocks (``extract_from_file``: the block, its line, the
``<!-- pytest.mark.... -->`` comments before it). Each Markdown file gets one working folder, with the
toy world linked in as ``toy-world/`` and the files a reader brings (``a.png``, ``prompts.jsonl``, ...);
its blocks run there in order, so a later block sees what an earlier one wrote. Hub ids, GPU devices and
server addresses are replaced by tests/docs_substitutions.py's table, nothing else. A block marked

    <!-- pytest.mark.parse_only("why it cannot run here") -->

is checked for argument parsing only (tests/scripts/check_args.py runs each command's own parser and stops;
Python is compiled and its imports run); ``<!-- pytest.mark.slow -->`` marks the minutes-long ones (still
run by ``make test``); ``<!-- pytest.mark.repo_venv -->`` runs an install block in the repository's root with a
fresh virtual environment first on PATH (its dependencies visible through a ``.pth`` file to this environment's
site-packages, so only the project itself is installed). No block is skipped.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from pytest_codeblocks import extract_from_file

from docs_substitutions import needs_server, substitute

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CHECK_ARGS = REPO / "tests" / "scripts" / "check_args.py"
CHECK_LLAMAFACTORY_ARGS = REPO / "tests" / "scripts" / "check_llamafactory_args.py"
CHECK_TRL_EXAMPLE_ARGS = REPO / "tests" / "scripts" / "check_trl_example_args.py"
TRL_EXAMPLES = ("dpo_vlm.py", "online_dpo_vlm.py", "grpo_vlm.py", "sft_vlm.py")  # TRL's scripts: not in its wheel
LLAMAFACTORY_BIN = REPO / ".venv-llamafactory" / "bin"
CHECKOUT = ("integrations", "benchmarks", "examples", "env", ".venv-llamafactory")  # a reader's folder: a checkout
RUNNABLE = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python"}
BLOCK_TIMEOUT = 900


@dataclass(frozen=True)
class DocBlock:
    path: Path
    line: int
    language: str
    code: str
    parse_only: str | None  # the reason, when the block cannot run here
    slow: bool
    repo_venv: bool

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def _mark(marks: list[str], name: str) -> re.Match | None:
    """The ``pytest.mark.NAME(...)`` comment among ``marks`` (its argument as group 1), or None."""
    pattern = rf"pytest\.mark\.{name}(?:\((.*)\))?"
    return next((m for mark in marks if (m := re.fullmatch(pattern, mark.strip()))), None)


def doc_blocks() -> list[DocBlock]:
    blocks = []
    for path in DOCS:
        for block in extract_from_file(path):
            language = RUNNABLE.get((block.syntax or "").strip())
            if language is None:
                continue
            parse_only = _mark(block.marks, "parse_only")
            blocks.append(DocBlock(
                path, block.lineno, language, block.code,
                ast.literal_eval(parse_only.group(1)) if parse_only else None,
                _mark(block.marks, "slow") is not None,
                _mark(block.marks, "repo_venv") is not None,
            ))
    return blocks


BLOCKS = doc_blocks()


def _env(bin_dir: Path = Path(sys.executable).parent) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}".rstrip(os.pathsep),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "2",
        "ACCELERATE_USE_CPU": "1",
    }


# --- the reader's folder -------------------------------------------------------------------------------------


def _reader_files(folder: Path, world: dict) -> None:
    """What a reader of the docs has at hand: a checkout's root with the toy world built in it, two images, two clips,
    an edit triple, prompts and items."""
    data = Path(world["data_dir"])
    (folder / "toy-world").symlink_to(world["root"], target_is_directory=True)
    for name in CHECKOUT:
        (folder / name).symlink_to(REPO / name, target_is_directory=True)
    for name, source in {
        "a.png": "image_pairs/00000_1.png", "b.png": "image_pairs/00000_2.png",
        "source.png": "image_pairs/00001_1.png", "edit1.png": "image_pairs/00001_2.png",
        "edit2.png": "image_pairs/00002_1.png",
        "clip1.mp4": "video_pairs/00000_1.mp4", "clip2.mp4": "video_pairs/00000_2.mp4",
    }.items():
        shutil.copy(data / source, folder / name)
    lines = (data / "gen_prompts.jsonl").read_text().splitlines()[:4]
    (folder / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "items.jsonl").write_text(
        '{"id": "p0", "media": ["a.png", "b.png"], "fields": {"prompt": "a red circle"}}\n'
        '{"id": "p1", "media": ["b.png", "a.png"], "fields": {"prompt": "a red circle"}}\n'
    )


@pytest.fixture(scope="module")
def folders(tmp_path_factory, toy_world):
    made: dict[Path, Path] = {}

    def folder_for(doc: Path) -> Path:
        if doc not in made:
            made[doc] = tmp_path_factory.mktemp(doc.stem)
            _reader_files(made[doc], toy_world)
        return made[doc]

    return folder_for


# --- argument parsing only -----------------------------------------------------------------------------------


def _commands(code: str) -> list[list[str]]:
    """The block's commands, one argv each: continuations joined, comments and ``VAR=value`` prefixes dropped."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        argv = shlex.split(line, comments=True)
        while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]):
            argv.pop(0)
        if argv:
            commands.append(argv)
    return commands


def _parse_check(argv: list[str]) -> list[str]:
    """The command that checks ``argv``'s arguments without running it."""
    program, *args = argv
    python = [sys.executable, str(CHECK_ARGS)]
    if program == "make":
        return ["make", "-n", "-C", str(REPO), *args]
    if program == "bash":
        return ["bash", "-n", str(REPO / args[0])]
    if program == "unifiedreward":
        return [*python, "-m", "unifiedreward.cli", *args]
    if program == "trl":
        return [*python, "trl.cli:main", *args]
    if program == "llamafactory-cli":
        return [str(LLAMAFACTORY_BIN / "python"), str(CHECK_LLAMAFACTORY_ARGS), *args]
    if program == "accelerate" and args[:1] == ["launch"]:
        args = args[1:]
        while args and args[0] != "-m" and not args[0].endswith(".py"):
            args = args[1:]
        program = "python"
    if program.endswith("python") and args[0] in TRL_EXAMPLES:
        return [program if "/" not in program else str(REPO / program), str(CHECK_TRL_EXAMPLE_ARGS), *args]
    if program == "python":
        return [*python, *args]
    raise AssertionError(f"no argument check for {program!r}: extend _parse_check")


def _check_python(code: str) -> None:
    tree = ast.parse(code)
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    exec(compile(ast.Module(imports, type_ignores=[]), "<doc imports>", "exec"), {})


# --- the test ------------------------------------------------------------------------------------------------


def _fresh_venv(folder: Path) -> Path:
    """A new virtual environment that sees this one's packages: its ``bin`` folder."""
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    ours = next(p for p in sys.path if p.endswith("site-packages"))
    Path(site, "our-environment.pth").write_text(ours + "\n")
    return venv / "bin"


def _run(command: list[str], cwd: Path, block: DocBlock, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
    assert result.returncode == 0, (
        f"{block.id} exited {result.returncode}\n--- block as run:\n{command[-1] if len(command) < 5 else command}\n"
        f"--- stdout:\n{result.stdout[-4000:]}\n--- stderr:\n{result.stderr[-6000:]}"
    )


@pytest.mark.parametrize(
    "block", [pytest.param(b, id=b.id, marks=[pytest.mark.slow] if b.slow else []) for b in BLOCKS]
)
def test_documented_block(block: DocBlock, folders, request):
    folder = folders(block.path)
    server = request.getfixturevalue("vllm_server").base_url if needs_server(block.code) else None
    code = substitute(block.code, server)
    if block.parse_only is not None:
        if block.language == "python":
            _check_python(code)
        else:
            for argv in _commands(code):
                _run(_parse_check(argv), folder, block)
        return
    if block.language == "python":
        script = folder / f"block_{block.line}.py"
        script.write_text(code)
        _run([sys.executable, script.name], folder, block)
    elif block.repo_venv:
        _run(["bash", "-euo", "pipefail", "-c", code], REPO, block, _env(_fresh_venv(folder)))
    else:
        _run(["bash", "-euo", "pipefail", "-c", code], folder, block)


def test_every_block_is_checked():
    """Each Markdown file's shell and Python blocks are all collected: a fence in another language is the only way
    out, and parse-only blocks say why."""
    assert len(BLOCKS) >= 30, [b.id for b in BLOCKS]
    assert all(b.parse_only for b in BLOCKS if b.parse_only is not None), "parse_only needs a reason"
