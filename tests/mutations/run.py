"""Mutation check of the protections in tests/mutations/mutations.py.

Copies the repository (the files `git ls-files` lists, as they are on disk, untracked ones
not ignored included; with --head the committed tree of HEAD) to a temporary directory, checks that
Python there imports `syncflow` from the copy (in-process and in a worker started the way the
tests start workers), runs every named test once unmutated (all must pass, or the check means
nothing), then applies each mutation alone to the copy and runs its tests. A mutation is
killed when pytest exits 1 with a failed test; exit 0 is a survivor; anything else (collection
or usage error, interrupted, timeout) and an old text that is not in its file exactly once
are errors of the check. Prints a table and the kill ratio; exits non-zero unless every
mutation was killed.

    .venv/bin/python tests/mutations/run.py [--head] [--only SUBSTRING] [--keep] [--timeout S]
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mutations import MUTATIONS, Mutation  # noqa: E402


@dataclass
class Outcome:
    mutation: Mutation
    result: str  # killed | survived | error: ...
    seconds: float
    output: str = ""


def python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def copy_repository(dest: Path, *, head: bool) -> int:
    """The files git knows of as they are on disk (tracked, and untracked ones not ignored:
    what pytest in the working tree sees), or with `head` the committed tree of HEAD."""
    if head:
        archive = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=REPO, check=True,
                                 capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            members = [m for m in tar.getmembers() if m.isfile() or m.issym() or m.isdir()]
            tar.extractall(dest, members=members, filter="tar")
        return sum(1 for m in members if not m.isdir())
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            check=True, capture_output=True).stdout.split(b"\0")
    copied = 0
    for raw in dict.fromkeys(listed):
        if not raw:
            continue
        rel = raw.decode()
        src, dst = REPO / rel, dest / rel
        if not (src.is_file() or src.is_symlink()):
            continue  # deleted in the working tree, or a submodule
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst, follow_symlinks=False)
        copied += 1
    return copied


def environment(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(copy), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no stale .pyc of a file mutated within one second
    env.pop("PYTEST_ADDOPTS", None)
    return env


def _probe(code: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run([python(), "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"cannot import syncflow from the copy:\n{done.stderr[-3000:]}")
    return done.stdout


def check_imports(copy: Path, env: dict[str, str]) -> None:
    """`syncflow` and REPO_ROOT (which the tests hand to their worker subprocesses as
    PYTHONPATH) must both be the copy, in the test process and in a worker's."""
    probe = ("import syncflow, syncflow.cli.sync_in, syncflow.settings as s; "
             "print(syncflow.__file__); print(syncflow.cli.sync_in.__file__); print(s.REPO_ROOT)")
    out = _probe(probe, copy, env)
    paths = out.split()
    root = copy.resolve()
    if not all(Path(p).resolve().is_relative_to(root) for p in paths):
        raise SystemExit(f"the copy is not what Python imports: {paths}")
    # a worker: another cwd, PYTHONPATH = REPO_ROOT of the copy (as the tests build it)
    worker_env = dict(env, PYTHONPATH=paths[2])
    with tempfile.TemporaryDirectory() as elsewhere:
        out = _probe(probe, Path(elsewhere), worker_env)
    if not all(Path(p).resolve().is_relative_to(root) for p in out.split()):
        raise SystemExit(f"a worker started by the tests would not import the copy: {out.split()}")


def run_tests(copy: Path, env: dict[str, str], tests: tuple[str, ...], timeout: float) -> tuple[int | None, str]:
    cmd = [python(), "-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider", "--no-header", *tests]
    proc = subprocess.Popen(cmd, cwd=copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the pytest run and the workers it started
        output, _ = proc.communicate()
        return None, output
    return proc.returncode, output


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def mutate(source: str, old: str, new: str) -> str:
    """`source` with `old` replaced by `new`; `old` must occur exactly once. An `old` of whole
    lines also matches at another indentation (code moved into or out of a block): it and
    `new` are shifted alike."""
    count = source.count(old)
    if count == 1:
        return source.replace(old, new)
    if count == 0 and old.endswith("\n"):
        old_lines = old.splitlines()
        base = min(_indent(line) for line in old_lines if line.strip())
        body = [line[base:] for line in old_lines]
        pattern = "^(?P<ind> *)" + re.escape(body[0]) + "\n" + "".join(
            ("(?P=ind)" if line else "") + re.escape(line) + "\n" for line in body[1:])
        found = list(re.finditer(pattern, source, flags=re.MULTILINE))
        if len(found) == 1:
            ind = found[0]["ind"]
            shifted = "".join((ind + line[base:] if line.strip() else line) + "\n" for line in new.splitlines())
            return source[: found[0].start()] + shifted + source[found[0].end():]
        count = len(found)
    raise LookupError(f"old text found {count} times (must be exactly once)")


def apply(copy: Path, m: Mutation) -> str:
    """Apply the mutation; return the original text of the file."""
    path = copy / m.file
    if not path.is_file():
        raise LookupError(f"{m.file} does not exist")
    original = path.read_text()
    try:
        mutated = mutate(original, m.old, m.new)
    except LookupError as exc:
        raise LookupError(f"{m.file}: {exc}") from None
    try:
        compile(mutated, str(path), "exec")
    except SyntaxError as exc:
        raise LookupError(f"the mutated {m.file} does not compile: {exc}") from None
    path.write_text(mutated)
    return original


def short(test: str) -> str:
    return test.rsplit("::", 1)[-1]


def table(outcomes: list[Outcome]) -> str:
    rows = [("mutation", "tests", "result", "seconds")]
    for o in outcomes:
        tests = list(o.mutation.tests)
        rows.append((o.mutation.name, short(tests[0]), o.result, f"{o.seconds:.1f}"))
        rows += [("", short(t), "", "") for t in tests[1:]]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="run only the mutations whose name contains this")
    parser.add_argument("--head", action="store_true",
                        help="mutate the committed tree of HEAD instead of the working tree's files")
    parser.add_argument("--keep", action="store_true", help="keep the copy (its path is printed)")
    parser.add_argument("--timeout", type=float, default=420.0, help="seconds per pytest run")
    args = parser.parse_args()
    mutations = [m for m in MUTATIONS if not args.only or args.only in m.name]
    if not mutations:
        print("no mutation matches", file=sys.stderr)
        return 2
    started = time.monotonic()
    copy = Path(tempfile.mkdtemp(prefix="syncflow-mutations-"))
    try:
        n = copy_repository(copy, head=args.head)
        env = environment(copy)
        check_imports(copy, env)
        print(f"copied {n} files to {copy}; syncflow and the workers' REPO_ROOT import from the copy", flush=True)

        tests = tuple(dict.fromkeys(t for m in mutations for t in m.tests))
        t0 = time.monotonic()
        code, output = run_tests(copy, env, tests, args.timeout * 2)
        print(f"unmutated: {len(tests)} target tests, exit {code}, {time.monotonic() - t0:.1f}s", flush=True)
        if code != 0:
            print("\n".join("    " + line for line in output.splitlines()[-80:]))
            print("the target tests do not pass unmutated: the check means nothing", file=sys.stderr)
            return 2

        outcomes: list[Outcome] = []
        for m in mutations:
            t0 = time.monotonic()
            try:
                original = apply(copy, m)
            except LookupError as exc:
                outcomes.append(Outcome(m, f"error: {exc}", 0.0))
                print(f"[error   ] {m.name}: {exc}", flush=True)
                continue
            try:
                code, output = run_tests(copy, env, m.tests, args.timeout)
            finally:
                (copy / m.file).write_text(original)
            seconds = time.monotonic() - t0
            failed = [line for line in output.splitlines() if line.startswith("FAILED ")]
            if code == 1 and failed:
                result = "killed"
            elif code == 1:
                result = "error: no test failed (errors in setup or teardown only)"
            elif code == 0:
                result = "SURVIVED"
            elif code is None:
                result = f"error: timeout after {args.timeout:.0f}s"
            else:
                result = f"error: pytest exit {code}"
            outcomes.append(Outcome(m, result, seconds, output))
            print(f"[{result.split(':')[0]:8}] {m.name} ({seconds:.1f}s)", flush=True)
            why = next((line for line in output.splitlines() if line.startswith("E   ")), "")
            for line in failed:
                print(f"           {line[:300]}", flush=True)
            if failed and why:
                print(f"           {why[:300]}", flush=True)
            if result != "killed":
                print("\n".join("    " + line for line in output.splitlines()[-40:]), flush=True)

        killed = sum(o.result == "killed" for o in outcomes)
        print()
        print(table(outcomes))
        print()
        print(f"kill ratio: {killed}/{len(outcomes)} ({100 * killed / len(outcomes):.0f} %), "
              f"{time.monotonic() - started:.0f}s in all")
        return 0 if killed == len(outcomes) else 1
    finally:
        if args.keep:
            print(f"kept the copy: {copy}")
        else:
            shutil.rmtree(copy, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
