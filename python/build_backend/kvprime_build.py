"""A PEP 517 build backend for kvprime's Python package, standard library only.

`pip install .` calls build_wheel: configure and build the CMake target `_kvprime` in the checkout's
build directory (KVPRIME_BUILD_DIR, default build/; an existing build is reused, so after
scripts/setup.sh this is seconds), then pack <build>/python/kvprime into a wheel tagged for the
running interpreter. The extension is built for the interpreter that runs this backend, and links
the libtorch that interpreter's `torch` uses (python/CMakeLists.txt), so install into an
environment that can import torch (e.g. a venv made with --system-site-packages next to Debian's
python3-torch).
"""

import base64
import hashlib
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NAME = "kvprime"


def _version():
    text = open(os.path.join(ROOT, "include", "kvprime", "core", "version.h")).read()
    m = re.search(r'kVersion = "([^"]+)"', text)
    if not m:
        raise RuntimeError("include/kvprime/core/version.h: no kVersion line")
    return m.group(1)


def _build_dir():
    d = os.environ.get("KVPRIME_BUILD_DIR", "build")
    return d if os.path.isabs(d) else os.path.join(ROOT, d)


def _cache_value(build, name):
    path = os.path.join(build, "CMakeCache.txt")
    if not os.path.exists(path):
        return None
    for line in open(path, encoding="utf-8", errors="replace"):
        if line.startswith(name + ":"):
            return line.split("=", 1)[1].strip()
    return None


def _soabi(python):
    return subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_config_var('SOABI'))"],
                          check=True, capture_output=True, text=True, env=_clean_env()).stdout.strip()


def _clean_env():
    # pip's isolated build environment hides the system's site-packages from Python processes
    # through PYTHONPATH (a sitecustomize) and PYTHONNOUSERSITE; CMake's Python (which must import
    # torch to find libtorch_python) has to see them.
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONNOUSERSITE", "PYTHONHOME", "PYTHONSAFEPATH"):
        env.pop(var, None)
    return env


def _run(cmd):
    print("kvprime_build:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, env=_clean_env())


def _build_extension():
    build = _build_dir()
    configured = _cache_value(build, "KVPRIME_BUILD_PYTHON") in ("ON", "TRUE", "1")
    cached_python = _cache_value(build, "Python3_EXECUTABLE")
    extra = os.environ.get("KVPRIME_CMAKE_ARGS", "").split()
    if configured and cached_python and not extra:
        # A build configured for Python already (scripts/setup.sh): keep its interpreter (a venv's
        # python would be cached there and vanish with the venv), if it has this one's ABI.
        if _soabi(cached_python) != sysconfig.get_config_var("SOABI"):
            raise RuntimeError(
                f"{build} builds the extension for {cached_python} "
                f"({_soabi(cached_python)}), not for this Python ({sysconfig.get_config_var('SOABI')}): "
                "set KVPRIME_BUILD_DIR to another build directory")
    else:
        configure = ["cmake", "-S", ROOT, "-B", build, "-DKVPRIME_BUILD_PYTHON=ON",
                     "-DPython3_EXECUTABLE=" + sys.executable] + extra
        if not os.path.exists(os.path.join(build, "CMakeCache.txt")):
            configure += ["-G", "Ninja", "-DCMAKE_BUILD_TYPE=RelWithDebInfo"]
        _run(configure)
    jobs = os.environ.get("KVPRIME_JOBS", str(os.cpu_count() or 1))
    _run(["cmake", "--build", build, "--target", "_kvprime", "-j", jobs])
    pkg = os.path.join(build, "python", NAME)
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    if not os.path.exists(os.path.join(pkg, "_kvprime" + suffix)):
        raise RuntimeError(f"the build left no {pkg}/_kvprime{suffix}: was it built for another "
                           f"Python? (this is {sys.version.split()[0]})")
    return pkg


def _tag():
    impl = "cp" + sysconfig.get_config_var("py_version_nodot")
    abi = "cp" + sysconfig.get_config_var("py_version_nodot")
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return f"{impl}-{abi}-{plat}"


def _metadata():
    return (f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {_version()}\n"
            "Summary: Transformer KV caches built, operated on and scored in C++ (LibTorch)\n"
            "Requires-Python: >=3.9\nRequires-Dist: torch\n")


def _record_line(arcname, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


# ---- PEP 517 hooks -------------------------------------------------------------------------------

def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    dist_info = f"{NAME}-{_version()}.dist-info"
    os.makedirs(os.path.join(metadata_directory, dist_info), exist_ok=True)
    with open(os.path.join(metadata_directory, dist_info, "METADATA"), "w") as f:
        f.write(_metadata())
    return dist_info


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    pkg = _build_extension()
    version = _version()
    tag = _tag()
    wheel_name = f"{NAME}-{version}-{tag}.whl"
    dist_info = f"{NAME}-{version}.dist-info"
    records = []
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w",
                         compression=zipfile.ZIP_DEFLATED) as z:
        for fname in sorted(os.listdir(pkg)):
            path = os.path.join(pkg, fname)
            if fname.startswith(".") or not os.path.isfile(path):
                continue
            if not (fname.endswith(".py") or fname.startswith("_kvprime")):
                continue
            data = open(path, "rb").read()
            arc = f"{NAME}/{fname}"
            z.writestr(arc, data)
            records.append(_record_line(arc, data))
        wheel_meta = (f"Wheel-Version: 1.0\nGenerator: kvprime_build\nRoot-Is-Purelib: false\n"
                      f"Tag: {tag}\n").encode()
        for fname, data in (("METADATA", _metadata().encode()), ("WHEEL", wheel_meta)):
            arc = f"{dist_info}/{fname}"
            z.writestr(arc, data)
            records.append(_record_line(arc, data))
        records.append(f"{dist_info}/RECORD,,")
        z.writestr(f"{dist_info}/RECORD", "\n".join(records) + "\n")
    return wheel_name


def build_sdist(sdist_directory, config_settings=None):
    """The tracked files of the checkout (git ls-files), without build outputs."""
    version = _version()
    base = f"{NAME}-{version}"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True,
                           text=True).stdout.split("\n")
    name = f"{base}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as t:
        for f in files:
            if f and os.path.isfile(os.path.join(ROOT, f)):
                t.add(os.path.join(ROOT, f), arcname=f"{base}/{f}")
        info = f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {version}\n".encode()
        ti = tarfile.TarInfo(f"{base}/PKG-INFO")
        ti.size = len(info)
        import io
        t.addfile(ti, io.BytesIO(info))
    return name
