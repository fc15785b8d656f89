"""An emulated Raspberry Pi OS 12 Python: Debian 12's arm64 python3.11 run by qemu-aarch64 in user mode.

Raspberry Pi OS 12 ships Debian 12's python3.11, so the interpreter here is that very build,
unpacked from Debian's arm64 ``.deb`` files into a sysroot and started as
``qemu-aarch64-static -L SYSROOT SYSROOT/usr/bin/python3.11``. No chroot, binfmt or root is
needed, and the host's dpkg/apt configuration is never touched: apt runs with a private state
directory (``-o Dir::State=...``), so no ``dpkg --add-architecture`` is left behind.

aarch64 wheels are installed with the host's pip (``--target --platform ... --only-binary``).
Every manylinux tag up to glibc 2.36 (Debian 12) is listed: with fewer, pip silently picks an
old ai-edge-litert or finds nothing.

The CPU is named (``-cpu cortex-a72``, a Raspberry Pi 4; ``cortex-a76`` is a Pi 5). qemu 7.2's
default ``max`` CPU also announces SVE/SME/i8mm, and with it ai-edge-litert's int8 kernels return
wrong images (up to 255 steps off, on half the pixels); on the Pi CPUs they match x86_64 exactly.

Under emulation the host's x86 ``/sys`` and ``/proc/cpuinfo`` are visible, and pytorch-cpuinfo
(inside onnxruntime and ai-edge-litert) segfaults at import on them; ``-L`` makes qemu look in
the sysroot first, so a Raspberry Pi 4-like ``proc/cpuinfo`` and cpu lists are placed there.

Downloads and results are cached under ``.cache/aarch64`` in the repository (gitignored;
``COMPRESSOR_CACHE`` moves it) and reused until ``--refresh``::

    python -m tests.aarch64.emulator [--tflite] [--refresh]   # build or reuse; prints JSON timings

Timings under emulation say nothing about a Raspberry Pi.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD_VERSION = 1  # bump when the sysroot layout below changes

ROOT_PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6")
# Only maintainer scripts and mailcap use these; the interpreter never runs them.
SKIPPED_PACKAGES = frozenset({"dpkg", "install-info", "perl", "perl-base", "tar", "mailcap", "mime-support"})
MANYLINUX_TAGS = ("manylinux2014_aarch64",) + tuple(f"manylinux_2_{minor}_aarch64" for minor in range(17, 37))
TFLITE_REQUIREMENTS = ("numpy<2", "tflite-runtime==2.14.0")

_CPU = (
    "processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n"
)
FAKE_FILES = {  # a Raspberry Pi 4 (4 x Cortex-A72), as its kernel reports it
    "proc/cpuinfo": "".join(_CPU.format(i=i) for i in range(4))
    + "Hardware\t: BCM2835\nRevision\t: c03114\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n",
    "sys/devices/system/cpu/possible": "0-3\n",
    "sys/devices/system/cpu/present": "0-3\n",
    "sys/devices/system/cpu/online": "0-3\n",
}


PI4_CPU, PI5_CPU = "cortex-a72", "cortex-a76"


class UnavailableError(RuntimeError):
    """This machine cannot build the emulator (no apt/dpkg-deb, not x86_64, no network); says why."""


@dataclass(frozen=True)
class Emulator:
    """A built sysroot and the qemu that runs it; ``command`` starts its python3.11."""

    qemu: Path
    sysroot: Path
    packages: tuple[str, ...]  # "name=version" of every .deb in the sysroot

    def command(self, *args: str, cpu: str = PI4_CPU) -> list[str]:
        return [str(self.qemu), "-cpu", cpu, "-L", str(self.sysroot), str(self.sysroot / "usr/bin/python3.11"), *args]

    def env(self, *paths: Path | str, home: Path | str) -> dict[str, str]:
        """A clean environment: nothing of the host's Python leaks in; ``paths`` become PYTHONPATH."""
        return {
            "PATH": "/usr/bin:/bin",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "PYTHONNOUSERSITE": "1",
            "PYTHONPATH": os.pathsep.join(str(p) for p in paths),
        }

    def run(self, *args: str, paths=(), home: Path | str = "/tmp", cpu: str = PI4_CPU, timeout: float = 900):
        return subprocess.run(
            self.command(*args, cpu=cpu),
            env=self.env(*paths, home=home),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def cache_dir() -> Path:
    return Path(os.environ.get("COMPRESSOR_CACHE") or ROOT / ".cache") / "aarch64"


def edge_requirements() -> list[str]:
    """numpy plus the runtimes of the [litert] and [onnx] extras, as pyproject.toml declares them."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise UnavailableError("reading pyproject.toml needs Python 3.11 (tomllib)") from None
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return list(project["dependencies"]) + list(extras["litert"]) + list(extras["onnx"])


def build(*, tflite: bool = False, refresh: bool = False, log=lambda msg: None) -> tuple[Emulator, dict[str, Path]]:
    """Build (or reuse) qemu, the sysroot and the aarch64 site-packages; returns them and {site: dir}.

    Sites: ``edge`` (numpy 2 + ai-edge-litert + onnxruntime, pinned by constraints.txt) and,
    with ``tflite``, ``tflite`` (numpy<2 + tflite-runtime 2.14). Safe to call from several
    processes at once: a lock file serializes building, and each result is renamed into place.
    """
    if platform.machine() not in ("x86_64", "AMD64"):
        raise UnavailableError(f"the emulated decode is built on x86_64 hosts; this one is {platform.machine()}")
    for tool in ("apt-get", "apt-cache", "dpkg-deb"):
        if not shutil.which(tool):
            raise UnavailableError(f"{tool} not found: the arm64 Python comes from Debian's packages (Debian/Ubuntu)")
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".lock"):
        apt = _Apt(cache / "apt")
        sysroot, packages = _sysroot(apt, cache, refresh, log)
        qemu = _qemu(apt, cache, refresh, log)
        sites = {"edge": _site(cache, "edge", edge_requirements(), ROOT / "constraints.txt", refresh, log)}
        if tflite:
            sites["tflite"] = _site(cache, "tflite", list(TFLITE_REQUIREMENTS), None, refresh, log)
    return Emulator(qemu, sysroot, packages), sites


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(cmd: list[str], *, timeout: float, cwd: Path | None = None, what: str) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UnavailableError(f"{what}: no result after {timeout:.0f} s (network down?)") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise UnavailableError(f"{what} failed (exit {proc.returncode}): " + " | ".join(tail))
    return proc.stdout


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps([BUILD_VERSION, *parts], sort_keys=True).encode()).hexdigest()[:12]


def _replace_dir(tmp: Path, final: Path, prefix: str) -> None:
    """Move a finished build into place and drop older builds of the same kind."""
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in final.parent.glob(prefix + "*"):
        if old != final and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


class _Apt:
    """apt-get/apt-cache on Debian 12's arm64 (and amd64, for qemu) lists, in a private state dir."""

    def __init__(self, root: Path):
        self.root = root
        self.options = [
            f"-oDir::State={root / 'state'}",
            f"-oDir::State::status={root / 'state/status'}",
            f"-oDir::Cache={root / 'cache'}",
            "-oAPT::Architecture=arm64",
            "-oAPT::Architectures::=arm64",
            "-oAPT::Architectures::=amd64",
            "-oAPT::Sandbox::User=root" if os.geteuid() == 0 else "-oAPT::Sandbox::User=" + _user(),
            "-oDebug::NoLocking=1",
            "-q",
        ]
        self.updated = False

    def update(self, log) -> None:
        for sub in ("state/lists/partial", "cache/archives/partial"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "state/status").touch()
        log("apt-get update (Debian 12 arm64 + amd64 lists, private state)")
        _run(["apt-get", *self.options, "update"], timeout=600, what="apt-get update")
        self.updated = True

    def ensure_lists(self, log) -> None:
        if not self.updated and not any((self.root / "state/lists").glob("*_Packages*")):
            self.update(log)

    def show(self, names: list[str]) -> dict[str, dict[str, str]]:
        """{name: fields} of each candidate; raises UnavailableError naming any that are missing."""
        out = _run(["apt-cache", *self.options, "show", "--no-all-versions", *names], timeout=120, what="apt-cache")
        found = {}
        for block in out.split("\n\n"):
            fields, last = {}, None
            for line in block.splitlines():
                if line.startswith(" ") and last:
                    continue
                key, _, value = line.partition(":")
                fields[key], last = value.strip(), key
            if "Package" in fields:
                arch = fields.get("Architecture")
                name = fields["Package"] + (":amd64" if arch == "amd64" else "")
                found.setdefault(name, fields)
        missing = [n for n in names if n not in found]
        if missing:
            raise UnavailableError(f"Debian has no candidate for {missing}")
        return found

    def download(self, fields: list[dict[str, str]], into: Path, log) -> list[Path]:
        """The .deb of each package, from the cache when its SHA-256 matches, else from Debian."""
        into.mkdir(parents=True, exist_ok=True)
        paths, wanted = [], []
        for f in fields:
            path = into / f"{f['Package']}_{f['Version'].replace(':', '%3a')}_{f['Architecture']}.deb"  # apt's name
            paths.append(path)
            if not (path.is_file() and _sha256(path) == f["SHA256"]):
                arch = ":amd64" if f["Architecture"] == "amd64" else ""
                wanted.append(f"{f['Package']}{arch}={f['Version']}")
        if wanted:
            log(f"apt-get download {len(wanted)} packages")
            _run(["apt-get", *self.options, "download", *wanted], cwd=into, timeout=900, what="apt-get download")
        for f, path in zip(fields, paths):
            if _sha256(path) != f["SHA256"]:
                raise UnavailableError(f"{path.name}: SHA-256 differs from Debian's index")
        return paths


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _closure(apt: _Apt) -> list[dict[str, str]]:
    """Candidates of ROOT_PACKAGES and their Depends/Pre-Depends (first alternative), minus SKIPPED."""
    seen: dict[str, dict[str, str]] = {}
    todo = list(ROOT_PACKAGES)
    for _ in range(50):  # dependency depth; Debian's is under 10
        if not todo:
            return [seen[n] for n in sorted(seen)]
        fields = apt.show(todo)
        seen.update(fields)
        nxt = set()
        for f in fields.values():
            for group in (f.get("Pre-Depends", "") + "," + f.get("Depends", "")).split(","):
                name = group.split("|")[0].split("(")[0].strip().split(":")[0]
                if name and name not in seen and name not in SKIPPED_PACKAGES:
                    nxt.add(name)
        todo = sorted(nxt)
    raise UnavailableError("dependency walk did not end")


def _sysroot(apt: _Apt, cache: Path, refresh: bool, log) -> tuple[Path, tuple[str, ...]]:
    key = _key(ROOT_PACKAGES, sorted(SKIPPED_PACKAGES), FAKE_FILES)
    final = cache / f"sysroot-{key}"
    if (final / ".complete").is_file() and not refresh:
        return final, tuple((final / ".complete").read_text().split())
    if refresh:
        apt.update(log)
    apt.ensure_lists(log)
    try:
        packages = _closure(apt)
        debs = apt.download(packages, cache / "debs", log)
    except UnavailableError:
        if apt.updated:
            raise
        apt.update(log)  # the cached lists may name versions Debian has since replaced
        packages = _closure(apt)
        debs = apt.download(packages, cache / "debs", log)
    log(f"unpacking {len(debs)} arm64 packages into the sysroot")
    tmp = cache / f"tmp-sysroot-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(tmp)], timeout=120, what=f"dpkg-deb -x {deb.name}")
    for rel, text in FAKE_FILES.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text)
    names = tuple(f"{p['Package']}={p['Version']}" for p in packages)
    (tmp / ".complete").write_text("\n".join(names) + "\n")
    _replace_dir(tmp, final, "sysroot-")
    return final, names


def _qemu(apt: _Apt, cache: Path, refresh: bool, log) -> Path:
    """qemu-aarch64-static: the host's if installed, else unpacked from Debian's qemu-user-static."""
    system = shutil.which("qemu-aarch64-static")
    if system:
        return Path(system)
    final = cache / "qemu" / "qemu-aarch64-static"
    if final.is_file() and not refresh:
        return final
    apt.ensure_lists(log)
    (deb,) = apt.download([apt.show(["qemu-user-static:amd64"])["qemu-user-static:amd64"]], cache / "debs", log)
    log(f"unpacking qemu-aarch64-static from {deb.name}")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_suffix(f".tmp{os.getpid()}")
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as proc:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                if member.name in ("./usr/bin/qemu-aarch64-static", "usr/bin/qemu-aarch64-static"):
                    with tar.extractfile(member) as src, open(tmp, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    break
            else:
                raise UnavailableError(f"{deb.name} holds no usr/bin/qemu-aarch64-static")
        proc.stdout.read()
    tmp.chmod(0o755)
    tmp.rename(final)
    return final


def _site(cache: Path, name: str, requirements: list[str], constraints: Path | None, refresh: bool, log) -> Path:
    """aarch64 wheels for CPython 3.11 installed into a --target dir (pure wheels too)."""
    pins = constraints.read_text() if constraints else ""
    final = cache / f"site-{name}-{_key(requirements, pins, MANYLINUX_TAGS)}"
    if (final / ".complete").is_file() and not refresh:
        return final
    wheels = cache / "wheels"
    platform_args = [a for tag in MANYLINUX_TAGS for a in ("--platform", tag)] + [
        "--only-binary=:all:",
        "--python-version=3.11",
        "--implementation=cp",
        "--abi=cp311",
    ]
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    cons = ["-c", str(constraints)] if constraints else []
    log(f"pip: aarch64 wheels for {' '.join(requirements)}")
    _run(pip + ["download", "-d", str(wheels), *platform_args, *cons, *requirements], timeout=900, what="pip download")
    tmp = cache / f"tmp-site-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    _run(
        pip
        + ["install", "--no-index", "--find-links", str(wheels), "--target", str(tmp), "--no-compile"]
        + platform_args
        + cons
        + requirements,
        timeout=900,
        what="pip install --target",
    )
    (tmp / ".complete").write_text("\n".join(requirements) + "\n")
    _replace_dir(tmp, final, f"site-{name}-")
    return final


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tflite", action="store_true", help="also build the numpy<2 + tflite-runtime 2.14 site")
    p.add_argument("--refresh", action="store_true", help="fetch lists and wheels again and rebuild")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    emu, sites = build(tflite=args.tflite, refresh=args.refresh, log=lambda m: print(m, file=sys.stderr))
    built = time.perf_counter() - t0
    probe = emu.run("-c", "import platform, sys; print(platform.machine(), sys.version.split()[0])", timeout=120)
    print(
        json.dumps(
            {
                "setup_seconds": round(built, 1),
                "qemu": str(emu.qemu),
                "sysroot": str(emu.sysroot),
                "packages": len(emu.packages),
                "sites": {k: str(v) for k, v in sites.items()},
                "python": probe.stdout.strip() or probe.stderr.strip()[-300:],
            },
            indent=2,
        )
    )
    return 0 if probe.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
