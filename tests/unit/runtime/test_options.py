"""The run options' values: what each parser accepts and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpack.errors import ConfigError
from mlpack.runtime import options


@pytest.mark.parametrize(
    ("text", "size"),
    [("512m", 512 << 20), ("2g", 2 << 30), ("2GiB", 2 << 30), ("1048576", 1 << 20), ("1.5k", 1536)],
)
def test_sizes(text: str, size: int) -> None:
    assert options.parse_size(text, option="-m") == size


@pytest.mark.parametrize(
    "text", ["abc", "-5m", "0", "", "nan", "inf", "1e400", "5x", "9" * 400, "8388608t", "0.1"]
)
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ConfigError, match="not a size from 1 byte to 8 EiB"):
        options.parse_size(text, option="-m")


def test_cpus_range_is_dockers() -> None:
    assert options.parse_cpus("0.5", available=2) == 0.5
    assert options.parse_cpus("2", available=2) == 2.0
    for text in ("nan", "inf", "-inf", "abc", "0", "0.001", "2.5", "-1"):
        with pytest.raises(ConfigError, match=r"range of CPUs is from 0.01 to 2.00") as err:
            options.parse_cpus(text, available=2)
        assert "at most 2" in err.value.hint
        assert "root" not in err.value.hint


def test_pids_limit() -> None:
    assert options.parse_pids_limit("100") == 100
    assert options.parse_pids_limit(str(options.MAX_PIDS)) == options.MAX_PIDS
    for text in ("abc", "0", "-1", "1.5", "", "²", "9" * 30, str(options.MAX_PIDS + 1)):
        with pytest.raises(ConfigError, match="not a whole number from 1 to"):
            options.parse_pids_limit(text)


def test_network() -> None:
    assert options.parse_network("none") == "none"
    assert options.parse_network("host") == "host"
    with pytest.raises(ConfigError, match="no 'bridge' network") as err:
        options.parse_network("bridge")
    assert "none" in err.value.hint


def test_workdir_must_be_absolute() -> None:
    assert options.parse_workdir("/app") == "/app"
    for text in ("relative", "", "/a\0b", "/" + "x" * 256):
        with pytest.raises(ConfigError):
            options.parse_workdir(text)


def test_host_paths_that_cannot_be_looked_up_are_refused() -> None:
    assert options.parse_path("a/b") == Path("a/b")
    assert options.parse_path(Path()) == Path()
    for text in ("/tmp/" + "x" * 256, "a\0b"):
        with pytest.raises(ConfigError):
            options.parse_path(text)


def test_a_too_long_component_has_its_own_message() -> None:
    with pytest.raises(ConfigError, match="is too long") as err:
        options.parse_workdir("/" + "x" * 256)
    assert "255 bytes" in err.value.hint
    assert "disk space" not in err.value.hint


@pytest.mark.parametrize("name", ["a", "web-1", "A.b_c", "x" * 64, "0day"])
def test_good_names(name: str) -> None:
    assert options.parse_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "a b", ".hidden", "-x", "_x", "a/b", "a\nb", "x" * 65, "é", "a\0"]
)
def test_bad_names_get_the_rule_as_hint(name: str) -> None:
    with pytest.raises(ConfigError) as err:
        options.parse_name(name)
    assert err.value.hint == options.NAME_HINT


@pytest.mark.parametrize("name", ["h", "trainer-1", "a.b.c", "x" * 64, "my_host"])
def test_good_hostnames(name: str) -> None:
    assert options.parse_hostname(name) == name


@pytest.mark.parametrize("name", ["", "-a", ".a", "a b", "x" * 65, "a\nb", "a/b"])
def test_bad_hostnames(name: str) -> None:
    with pytest.raises(ConfigError) as err:
        options.parse_hostname(name)
    assert err.value.hint == options.NAME_HINT


def test_labels() -> None:
    assert options.parse_label("a=b=c") == ("a", "b=c")
    assert options.parse_label("a=") == ("a", "")
    for text in ("nolabel", "=v", "a\n=b"):
        with pytest.raises(ConfigError, match="invalid --label"):
            options.parse_label(text)


def test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_HOST", "yes")
    assert options.parse_env("A=1") == ("A", "1")
    assert options.parse_env("FROM_HOST") == ("FROM_HOST", "yes")
    for text in ("=x", "", "A=\0"):
        with pytest.raises(ConfigError):
            options.parse_env(text)


def test_env_file(tmp_path: Path) -> None:
    env = tmp_path / "env"
    env.write_text("# comment\n\nA=1\n  B=2  \n")
    assert options.read_env_file(str(env)) == (("A", "1"), ("B", "2"))
    with pytest.raises(ConfigError, match="cannot read --env-file"):
        options.read_env_file(str(tmp_path / "missing"))
    (tmp_path / "bin").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="cannot read --env-file"):
        options.read_env_file(str(tmp_path / "bin"))


def test_volumes() -> None:
    mount = options.parse_volume("data:/data:ro")
    assert (mount.source, mount.target, mount.read_only) == (Path("data").absolute(), "/data", True)
    assert not options.parse_volume("/a:/b:rw").read_only
    for text in ("/a", "/a:b", "/a:/b:rx", ":/b", "/a:/b:ro:x"):
        with pytest.raises(ConfigError, match="invalid --volume"):
            options.parse_volume(text)


@pytest.mark.parametrize("user", ["0", "1000:1000", "nobody", "user:extra", "2147483647", "0:0"])
def test_good_users(user: str) -> None:
    assert options.parse_user(user) == user


@pytest.mark.parametrize(
    ("user", "kind"),
    [("4294967295", "uid"), ("99999999999", "uid"), ("2147483648", "uid"), ("1:4294967295", "gid")],
)
def test_ids_outside_runcs_range_are_refused(user: str, kind: str) -> None:
    with pytest.raises(ConfigError, match=r"is outside 0\.\.2147483647") as err:
        options.parse_user(user)
    assert err.value.hint == f"use a {kind} between 0 and 2147483647"


@pytest.mark.parametrize("user", ["", ":", "a:b:c", "a\nb", "0:", "-1", "0:-1"])
def test_malformed_users(user: str) -> None:
    with pytest.raises(ConfigError, match="invalid --user") as err:
        options.parse_user(user)
    assert "2147483647" in err.value.hint


def test_home(tmp_path: Path) -> None:
    assert options.check_home(str(tmp_path / "new" / "home")) == str(tmp_path / "new" / "home")
    (tmp_path / "file").write_text("x")
    for home in (str(tmp_path / "file"), str(tmp_path / "file" / "sub"), "/etc/passwd/sub"):
        with pytest.raises(ConfigError, match="is not a directory"):
            options.check_home(home)
    with pytest.raises(ConfigError, match="is too long"):
        options.check_home(str(tmp_path / ("a" * 300)))
