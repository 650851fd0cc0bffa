"""Reading uv's failures: the package and the host that failed, without uv's own advice."""

from __future__ import annotations

from pathlib import Path

from mlpack.lock.failure import read_failure
from mlpack.lock.indexes import Indexes
from mlpack.lock.resolvers import ResolveRequest
from mlpack.vocabulary import PackageSpec

BUILD = """\
error: Failed to build `mmcv==2.2.0`
  cause: The build backend returned an error
  cause: Call to `setuptools.build_meta:__legacy__.get_requires_for_build_wheel` failed (exit status: 1)

         [stderr]
         Traceback (most recent call last):
           File "<string>", line 14, in <module>
           File "/root/.cache/uv/builds-v0/.tmp/setuptools/build_meta.py", line 333, in get_requires
             return self._get_build_requires(config_settings, requirements=[])
           File "/root/.cache/uv/builds-v0/.tmp/setuptools/build_meta.py", line 301, in _get_build
             self.run_setup()
           File "/root/.cache/uv/builds-v0/.tmp/setuptools/build_meta.py", line 520, in run_setup
             super().run_setup(setup_script=setup_script)
           File "/root/.cache/uv/builds-v0/.tmp/setuptools/build_meta.py", line 317, in run_setup
             exec(code, locals())  # noqa: S102 # exec is intentional here
           File "<string>", line 5, in <module>
         ModuleNotFoundError: No module named 'pkg_resources'

hint: This error likely indicates that `mmcv@2.2.0` depends on `pkg_resources`, but doesn't \
declare it as a build dependency. If `mmcv` is a first-party package, consider adding \
`pkg_resources` to its `build-system.requires`. Otherwise, either add it to your \
`pyproject.toml` under:

[tool.uv.extra-build-dependencies]
mmcv = ["pkg_resources"]

or `uv pip install pkg_resources` into the environment and re-run with `--no-build-isolation`.
"""

GITHUB = """\
error: Failed to download and build `foo @ https://github.com/o/r/archive/main.zip`
  cause: Request failed after 3 retries in 7.3s
  cause: Failed to fetch: https://github.com/o/r/archive/main.zip
  cause: error sending request for url (https://github.com/o/r/archive/main.zip)
  cause: dns error
  cause: failed to lookup address information: Name or service not known
"""

GIT = """\
error: Failed to download and build `foo @ git+https://github.com/o/r`
  cause: Git operation failed
  cause: process didn't exit successfully: `/usr/bin/git fetch --force 'https://github.com/o/r'`
         --- stderr
         fatal: unable to access 'https://github.com/o/r/': Could not resolve host: github.com
"""

INDEX_DOWN = """\
error: Failed to fetch: `https://pypi.org/simple/numpy/`
  Caused by: error sending request for url (https://pypi.org/simple/numpy/)
  Caused by: Connection refused
"""


def request(*specs: tuple[str, str], python: str = "3.13.1") -> ResolveRequest:
    return ResolveRequest(
        requirements=tuple(PackageSpec(requirement=r, source=s) for r, s in specs),
        python=python,
        platform="linux/amd64",
        indexes=Indexes(),
        workdir=Path("/nonexistent"),
    )


def test_a_build_failure_names_the_package_and_its_error_without_uv_advice() -> None:
    failure = read_failure(request(("mmcv==2.2.0", "requirements.txt:4")), BUILD, tool="uv")
    assert failure.kind == "build"
    assert failure.package == "mmcv"
    assert failure.message.startswith("uv failed: mmcv==2.2.0 could not be built from source")
    assert "No module named 'pkg_resources'" in failure.message
    assert "depends on `pkg_resources`, but doesn't declare it as a build dependency." in (
        failure.message
    )
    for advice in ("tool.uv", "extra-build-dependencies", "--no-build-isolation", "uv pip"):
        assert advice not in failure.message
    assert "mmcv" in failure.hint


def test_an_unreachable_github_url_names_github_not_the_index() -> None:
    for text in (GITHUB, GIT):
        asked = ("foo @ git+https://github.com/o/r", "requirements.txt:1")
        failure = read_failure(request(asked), text, tool="uv")
        assert "for foo @ git+https://github.com/o/r (requirements.txt:1)" in failure.message
        assert failure.kind == "unreachable"
        assert "could not reach github.com" in failure.message
        assert "package index" not in failure.message
        assert "pypi.org" not in failure.message


def test_an_unreachable_index_is_still_the_index() -> None:
    failure = read_failure(request(("numpy", "requirements.txt:1")), INDEX_DOWN, tool="uv")
    assert "could not reach the package index (https://pypi.org/simple)" in failure.message


def test_no_wheels_for_this_python_points_at_python_not_at_relaxing() -> None:
    text = (
        "error: No solution found when resolving dependencies\n"
        "  cause: Because torch==2.0.1 has no wheels with a matching Python ABI tag (e.g., "
        "`cp313`) and you require torch==2.0.1, we can conclude that your requirements are "
        "unsatisfiable.\n"
    )
    failure = read_failure(request(("torch==2.0.1", "requirements.txt:1")), text, tool="uv")
    assert failure.kind == "conflict"
    assert failure.no_wheels == ("torch 2.0.1",)
    assert "relax" not in failure.hint
    assert "older Python" in failure.hint


def test_a_real_conflict_still_says_relax() -> None:
    text = (
        "error: No solution found when resolving dependencies\n"
        "  cause: Because you require numpy<1 and numpy>2, we can conclude that your "
        "requirements are unsatisfiable.\n"
    )
    failure = read_failure(request(("numpy<1", "a.txt:1"), ("numpy>2", "b.txt:1")), text, tool="uv")
    assert "relax one of the constraints" in failure.hint
    assert failure.involved == ("numpy",)


def test_a_missing_import_name_hints_at_its_distribution() -> None:
    text = (
        "  cause: Because sklearn was not found in the package registry and you require "
        "sklearn, we can conclude that your requirements are unsatisfiable.\n"
    )
    failure = read_failure(request(("sklearn", "requirements.txt:2")), text, tool="uv")
    assert failure.kind == "missing"
    assert "`scikit-learn`" in failure.hint
    assert "requirements.txt:2" in failure.message


def test_an_unknown_name_hints_at_spelling_and_the_import_map() -> None:
    text = "Because zzq-nothing was not found in the package registry and you require zzq-nothing"
    failure = read_failure(request(("zzq-nothing", "requirements.txt:2")), text, tool="uv")
    assert "spelling" in failure.hint
    assert "import-map" in failure.hint


def test_other_failures_show_what_failed_first_and_why_last() -> None:
    lines = ["error: Failed to parse something for `weird-pkg`"] + [f"line {i}" for i in range(30)]
    failure = read_failure(request(("weird-pkg", "r.txt:1")), "\n".join(lines), tool="uv")
    assert failure.kind == "other"
    assert "weird-pkg" in failure.message
    assert "line 29" in failure.message


def test_a_range_without_wheels_is_named_as_uv_wrote_it() -> None:
    text = (
        "  cause: Because tensorflow>=2.0.0,<=2.19.0 has no wheels with a matching Python ABI "
        "tag (e.g., `cp313`) and you require tensorflow>=2.0.0,<=2.19.0, we can conclude that "
        "your requirements are unsatisfiable.\n"
        "  cause: Because all versions of numpy have no wheels with a matching Python ABI tag\n"
    )
    failure = read_failure(request(("tensorflow>=2.0.0,<=2.19.0", "r.txt:1")), text, tool="uv")
    assert failure.no_wheels == ("tensorflow>=2.0.0,<=2.19.0", "numpy")


def test_a_build_failure_names_the_requirement_that_pulled_the_package_in() -> None:
    text = (
        "error: Failed to build `cryptacular==1.6.2`\n"
        "hint: `cryptacular` (v1.6.2) was included because `apex` (v0.9.10.dev0) depends on "
        "`cryptacular`\n"
    )
    failure = read_failure(request(("apex", "requirements.txt:1")), text, tool="uv")
    assert failure.kind == "build"
    assert failure.package == "cryptacular"
    assert failure.needed_by == "apex"
    assert failure.message.startswith("uv failed: cryptacular==1.6.2 (needed by apex)")
