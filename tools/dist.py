"""Build and check corosnap's distributions the way users install them (``make dist``).

1. Export the sources without ``.git`` (``git archive`` of the working tree's
   tracked files, uncommitted changes included), and build the sdist from that
   export with the running interpreter (CPython 3.11 under ``make dist``).  A
   second sdist is built from the checkout itself; both must list the same
   files, and both must carry every CPython version's C sources.
2. For each supported CPython found on this machine (``frames.SUPPORTED``;
   found as tools/test-matrix.sh finds them, never built here): a fresh venv;
   ``pip wheel`` builds that version's wheel *from the exported sdist* (which
   is what ``pip install corosnap-X.tar.gz`` does); the wheel's contents are
   checked; it is installed in the venv; tools/dist_smoke.py runs there
   (dumps/loads in one process, loads in another, pickling, the testing
   extra, the console script when ``corosnap.cli`` exists).
3. A summary: what was built, what passed, how long it took; also written to
   ``dist/dist.log``.

Wheel contents: the Python modules must be exactly those of ``src/corosnap``
(no stray files, no tests), with three compiled modules, this version's frame
module and the two C engines (codec, snapshot), and no C sources.  The
fuzzer is a dev tool outside the package (``tools/corosnap_fuzz``): a wheel
carrying a fuzz module is reported, and one carrying anything beyond
``src/corosnap`` fails the "exactly the modules of src/corosnap" check.

Usage: ``python tools/dist.py [--versions 3.11 3.12 ...] [--out dist]``.
Exit status 0 when every check of every version found passed.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUZZ_MODULES = ("corosnap/fuzz.py", "corosnap/_fuzz_zoo.py")
LOG: list[str] = []


def say(text: str) -> None:
    line = f"[dist {time.strftime('%H:%M:%S')}] {text}"
    print(line, flush=True)
    LOG.append(line)


class Failed(Exception):
    pass


def run(cmd: list[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 900) -> str:
    """Run a command, its output to ``log``; Failed (with the tail) if it fails."""
    with open(log, "w") as out:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(text.splitlines()[-25:])
        raise Failed(f"{' '.join(cmd[:4])} ... exited {proc.returncode} (log {log}):\n{tail}")
    return text


def supported() -> list[str]:
    text = (ROOT / "src/corosnap/frames/__init__.py").read_text()
    line = re.search(r"^SUPPORTED = (.*)$", text, re.M)
    assert line, "cannot read frames.SUPPORTED"
    return [f"3.{m}" for m in re.findall(r"\(3, (\d+)\)", line.group(1))]


def find_python(ver: str) -> str | None:
    """As tools/test-matrix.sh: $PYTHON_X_Y, the PATH, pyenv, ~/.cache/cpython."""
    home = Path.home()
    cache = Path(os.environ.get("XDG_CACHE_HOME", home / ".cache"))
    candidates = [os.environ.get(f"PYTHON_{ver.replace('.', '_')}"), shutil.which(f"python{ver}"),
                  *sorted(glob.glob(str(home / f".pyenv/versions/{ver}.*/bin/python{ver}")),
                          reverse=True),
                  str(cache / f"cpython/{ver}/bin/python{ver}")]
    check = (f"import sys, sysconfig; sys.exit(not ('%d.%d' % sys.version_info[:2] == '{ver}' "
             "and not sysconfig.get_config_var('Py_GIL_DISABLED')))")
    for cand in candidates:
        if cand and os.access(cand, os.X_OK):
            if subprocess.run([cand, "-c", check], capture_output=True).returncode == 0:
                return cand
    return None


def export(dest: Path, logs: Path) -> str:
    """The sources as a release tarball would have them: no .git."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=ROOT,
                            capture_output=True, text=True)
    if inside.returncode != 0:  # already an export (e.g. an unpacked sdist)
        shutil.copytree(ROOT, dest, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".venv*", "build", "dist", "*.so",
                                                      "__pycache__", "*.egg-info"))
        return "a copy of the tree (not a git checkout)"
    # `git stash create` makes a commit of the working tree's tracked files
    # without touching anything (empty when the tree is clean).
    ref = subprocess.run(["git", "stash", "create"], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip() or "HEAD"
    archive = logs / "export.tar"
    with open(archive, "wb") as out:
        subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT, stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    return f"git archive of {head}" + (" + uncommitted changes" if ref != "HEAD" else "")


def build_sdist(src: Path, out: Path, logs: Path, name: str) -> Path:
    if out.exists():
        shutil.rmtree(out)
    run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out),
         str(src)], logs / f"sdist-{name}.log")
    found = list(out.glob("corosnap-*.tar.gz"))
    if len(found) != 1:
        raise Failed(f"expected one sdist in {out}, found {found}")
    return found[0]


def sdist_files(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as tar:
        return {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()}


def check_sdist(files: set[str], tree: Path) -> list[str]:
    """Every version's C sources and headers, every module, the build files."""
    need = {str(p.relative_to(tree)) for pattern in ("*.c", "*.h")
            for p in (tree / "src/corosnap/frames").glob(pattern)}
    need |= {str(p.relative_to(tree)) for p in (tree / "src/corosnap").rglob("*.py")}
    need |= {"setup.py", "pyproject.toml", "MANIFEST.in", "LICENSE", "README.md"}
    missing = sorted(need - files)
    if missing:
        raise Failed(f"the sdist lacks {missing}")
    return sorted(f for f in files
                  if f.startswith("src/corosnap/frames/") and f.endswith((".c", ".h")))


def check_wheel(wheel: Path, ver: str, tree: Path, warnings: list[str]) -> dict[str, object]:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    tag = ver.replace(".", "")
    modules = sorted(n for n in names if n.startswith("corosnap/") and n.endswith(".py"))
    expected = sorted(str(p.relative_to(tree / "src"))
                      for p in (tree / "src/corosnap").rglob("*.py"))
    extra = sorted(set(modules) - set(expected))
    lacking = sorted(set(expected) - set(modules))
    if extra or lacking:
        raise Failed(f"wheel modules differ from src/corosnap: extra {extra}, missing {lacking}")
    compiled = sorted(n for n in names if n.endswith((".so", ".pyd")))
    wanted = (r"corosnap/codec/_ccodec\.", rf"corosnap/frames/_cpython{tag}\.",
              r"corosnap/snapshot/_csnapshot\.")  # in sorted order
    # zip(strict=False): a count other than 3 is refused just below
    if len(compiled) != 3 or not all(re.match(w, c)
                                     for w, c in zip(wanted, compiled, strict=False)):
        raise Failed(f"expected the frame module and the two C engines for {ver}, the wheel "
                     f"has {compiled}")
    sources = [n for n in names if n.endswith((".c", ".h"))]
    if sources:
        raise Failed(f"C sources in the wheel: {sources}")
    if "corosnap/py.typed" not in names:
        raise Failed("the wheel has no corosnap/py.typed")
    tests = [m for m in modules if re.search(r"(^|/)(test_[^/]*|conftest)\.py$", m)
             and m != "corosnap/testing.py"]
    if tests:
        raise Failed(f"test code in the wheel: {tests}")
    fuzz = [m for m in modules if m in FUZZ_MODULES or "fuzz" in m.rsplit("/", 1)[-1]]
    if fuzz:
        # Only possible while they are still package modules (checked above).
        warnings.append(f"{wheel.name}: the fuzzer is still in the package: {', '.join(fuzz)}")
    return {"modules": len(modules), "compiled": compiled[1], "fuzz": fuzz,
            "size_kb": wheel.stat().st_size // 1024}


def one_version(ver: str, python: str, sdist: Path, work: Path, wheels: Path,
                warnings: list[str]) -> dict[str, object]:
    t0 = time.monotonic()
    logs = work / "logs"
    venv = work / f"venv-{ver}"
    if venv.exists():
        shutil.rmtree(venv)
    run([python, "-m", "venv", str(venv)], logs / f"venv-{ver}.log")
    vpy = str(venv / "bin/python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    tmp = work / f"wheel-{ver}"
    if tmp.exists():
        shutil.rmtree(tmp)
    # What `pip install corosnap-X.tar.gz` does: build the wheel from the
    # sdist, in an isolated build environment, with this interpreter.
    run([vpy, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(tmp), str(sdist)],
        logs / f"wheel-{ver}.log", env=env)
    built = list(tmp.glob(f"corosnap-*-cp{ver.replace('.', '')}-*.whl"))
    if len(built) != 1:
        raise Failed(f"expected one cp{ver} wheel, pip made {list(tmp.iterdir())}")
    wheel = wheels / built[0].name
    shutil.move(str(built[0]), wheel)
    t_build = time.monotonic() - t0
    contents = check_wheel(wheel, ver, work / "export", warnings)
    run([vpy, "-m", "pip", "install", str(wheel)], logs / f"install-{ver}.log", env=env)
    empty = work / f"smoke-{ver}"
    empty.mkdir(exist_ok=True)
    out = run([vpy, str(work / "export/tools/dist_smoke.py")], logs / f"smoke-{ver}.log",
              cwd=empty, env=env)
    smoke = out.strip().splitlines()[-1]
    return {"wheel": wheel.name, "build_s": round(t_build, 1),
            "total_s": round(time.monotonic() - t0, 1), "smoke": smoke, **contents}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", nargs="*", default=None)
    parser.add_argument("--out", default=str(ROOT / "dist"))
    args = parser.parse_args()
    t0 = time.monotonic()
    out = Path(args.out).resolve()
    work = ROOT / "build/dist"
    logs = work / "logs"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    logs.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    rows: list[tuple[str, str, str, str]] = []
    failed = False

    say(f"building with {sys.executable} ({sys.version.split()[0]})")
    what = export(work / "export", logs)
    say(f"exported the sources without .git: {what}")
    sdist: Path | None = None
    try:
        built = build_sdist(work / "export", out, logs, "export")
        files = sdist_files(built)
        c_sources = check_sdist(files, work / "export")
        sdist = built
        say(f"sdist {sdist.name} ({sdist.stat().st_size // 1024} KB, {len(files)} files) from "
            f"the export: every version's C sources: {', '.join(Path(c).name for c in c_sources)}")
        checkout = build_sdist(ROOT, work / "sdist-checkout", logs, "checkout")
        other = sdist_files(checkout)
        if other != files:
            raise Failed(f"the sdists from the checkout and from the export differ: "
                         f"only in the checkout {sorted(other - files)} (untracked files? "
                         f"git add them), only in the export {sorted(files - other)}")
        say("the sdist built from the git checkout lists the same files")
        rows.append(("sdist", "PASS", f"{len(files)} files, {len(c_sources)} C files",
                     sdist.name))
    except Failed as exc:
        say(f"FAIL sdist: {exc}")
        rows.append(("sdist", "FAIL", str(exc).splitlines()[0][:60], ""))
        failed = True

    versions = args.versions or supported()
    for ver in versions:
        python = find_python(ver)
        if python is None:
            say(f"CPython {ver}: not found on this machine, skipped")
            rows.append((ver, "SKIP", "interpreter not found", ""))
            continue
        if sdist is None:
            rows.append((ver, "FAIL", "no sdist", python))
            continue
        say(f"CPython {ver} ({python}): wheel from the sdist, fresh venv, smoke test")
        try:
            got = one_version(ver, python, sdist, work, out, warnings)
        except (Failed, subprocess.TimeoutExpired) as exc:
            say(f"FAIL {ver}: {exc}")
            rows.append((ver, "FAIL", str(exc).splitlines()[0][:60], python))
            failed = True
            continue
        say(f"CPython {ver}: {got['wheel']} ({got['size_kb']} KB, {got['modules']} modules, "
            f"{got['compiled']}), built in {got['build_s']}s; smoke: {got['smoke']}")
        rows.append((ver, "PASS", f"{got['total_s']}s, wheel {got['size_kb']} KB",
                     str(got["wheel"])))

    wall = time.monotonic() - t0
    summary = ["", "== make dist summary ==",
               f"{'what':<7} {'result':<6} {'detail':<34} artifact"]
    summary += [f"{a:<7} {b:<6} {c:<34} {d}" for a, b, c, d in rows]
    summary += [f"warning: {w}" for w in warnings]
    summary.append(f"total wall time: {wall:.0f}s; artifacts in {out}, logs in {logs}")
    for line in summary:
        print(line)
    (out / "dist.log").write_text("\n".join(LOG + summary) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
