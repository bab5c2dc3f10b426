"""%VAR% expansion, layering and Windows-style values (pure functions)."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from corral.config.expand import (
    expand,
    finish,
    finish_argv,
    finish_env,
    layer_env,
    module_variables,
    posix_value,
    resolve_path,
)

ROOT = "/srv/site"
MODULE = module_variables(ROOT, "/blog")


def layered(os_env: dict[str, str], *layers: list[tuple[str, str]]) -> dict[str, str]:
    return dict(layer_env(os_env, MODULE, layers, site_root=ROOT))


def test_module_variables() -> None:
    assert dict(MODULE) == {
        "APPL_PHYSICAL_PATH": ROOT,
        "APPL_PHYSICAL_SHORT_PATH": ROOT,
        "APPL_VIRTUAL_PATH": "/blog",
        "APPL_ID": "blog",
    }
    assert dict(module_variables(ROOT, "/a/b"))["APPL_ID"] == "ab"


def test_unknown_references_stay_as_written() -> None:
    assert expand("%NOPE% and %ALSO_NOT%", lambda name: None) == "%NOPE% and %ALSO_NOT%"
    assert expand("100% sure", lambda name: "x") == "100% sure"


def test_os_then_engine_then_application() -> None:
    env = layered(
        {"A": "os", "B": "os", "C": "os"},
        [("B", "engine"), ("C", "engine")],
        [("C", "app:%B%")],
    )
    assert env == {"B": "engine", "C": "app:engine"}


def test_self_reference_prepends_to_the_value_below() -> None:
    env = layered(
        {"PATH": "/usr/bin:/bin"},
        [("PATH", "/engine/bin;%PATH%")],
        [("PATH", "%APPL_PHYSICAL_PATH%\\venv\\Scripts;%PATH%")],
    )
    assert env["PATH"] == "/srv/site/venv/Scripts:/engine/bin:/usr/bin:/bin"


def test_self_reference_to_an_unset_variable_adds_nothing() -> None:
    env = layered({}, [], [("PYTHONPATH", "%APPL_PHYSICAL_PATH%;%PYTHONPATH%")])
    assert env["PYTHONPATH"] == "/srv/site"


def test_names_are_case_insensitive_as_on_windows() -> None:
    env = layered({"Path": "/bin"}, [], [("X", "%path%|%appl_physical_path%")])
    assert env["X"] == "/bin|/srv/site"


def test_a_variable_may_use_one_defined_after_it() -> None:
    env = layered({}, [], [("A", "%B%/a"), ("B", "/b")])
    assert env["A"] == "/b/a"


def test_instance_variables_wait_for_the_worker() -> None:
    env = layered({"PORT": "1", "HOST": "h"}, [("LISTEN", "%HOST%:%PORT%#%INSTANCE_ID%")])
    assert env["LISTEN"] == "%HOST%:%PORT%#%INSTANCE_ID%"
    assert finish(env["LISTEN"], port=50001, host="127.0.0.1", instance_id=2) == (
        "127.0.0.1:50001#2"
    )
    assert finish_argv(["-p", "%port%"], port=5, host=None, instance_id=0) == ["-p", "5"]


def test_finish_env_builds_the_workers_whole_environment() -> None:
    env = finish_env(
        (("A", "%PORT%"), ("PATH", "/x")),
        MODULE,
        port=8000,
        host="127.0.0.1",
        instance_id=3,
        base={"PATH": "/bin", "HOME": "/h"},
    )
    assert env == {
        "PATH": "/x",
        "HOME": "/h",
        "APPL_PHYSICAL_PATH": ROOT,
        "APPL_PHYSICAL_SHORT_PATH": ROOT,
        "APPL_VIRTUAL_PATH": "/blog",
        "APPL_ID": "blog",
        "INSTANCE_ID": "3",
        "PORT": "8000",
        "HOST": "127.0.0.1",
        "A": "8000",
    }


def test_windows_values_inside_the_site_become_posix() -> None:
    assert posix_value("X", "/srv/site\\python_modules\\Lib", ROOT) == (
        "/srv/site/python_modules/Lib"
    )
    assert posix_value("PYTHONPATH", "venv\\lib\\site-packages;venv\\lib;app", ROOT) == (
        os.pathsep.join(["venv/lib/site-packages", "venv/lib", "app"])
    )
    # Drive-letter entries of a path list mean nothing here and are dropped.
    assert posix_value("PATH", "C:\\Python27;/srv/site\\bin", ROOT) == "/srv/site/bin"


def test_values_not_pointing_inside_the_site_are_left_alone() -> None:
    assert posix_value("DSN", "Server=db;Database=x", ROOT) == "Server=db;Database=x"
    assert posix_value("X", "C:\\Windows\\system32", ROOT) == "C:\\Windows\\system32"
    assert posix_value("X", "/srv/site2\\x", ROOT) == "/srv/site2\\x"


def test_resolve_path() -> None:
    assert resolve_path("log\\zoo-deploy.log", ROOT) == "/srv/site/log/zoo-deploy.log"
    assert resolve_path("/var/log/x", ROOT) == "/var/log/x"
    assert resolve_path("..\\logs\\deploy.log", ROOT) == "/srv/logs/deploy.log"


names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True)


@given(st.text(alphabet=st.characters(blacklist_characters="%"), max_size=50))
def test_text_without_percent_signs_is_unchanged(text: str) -> None:
    assert expand(text, lambda name: "VALUE") == text


@given(names, st.text(max_size=20))
def test_unknown_references_survive_any_surroundings(name: str, around: str) -> None:
    text = f"{around}%{name}%{around}"
    assert f"%{name}%" in expand(text, lambda ref: None)


@given(st.dictionaries(names, st.text(alphabet="abc/:", max_size=10), max_size=5))
def test_layering_is_deterministic_and_keeps_definition_order(values: dict[str, str]) -> None:
    items = list(values.items())
    once = layer_env({}, (), [items], site_root=ROOT)
    assert once == layer_env({}, (), [items], site_root=ROOT)
    assert [name for name, _ in once] == [name for name, _ in items]
