"""Sites as files (`[server] include`): glob expansion, relative paths, each file refused on its
own with file:line, what a refused file keeps on a reload, and what the watcher watches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.config import ConfigErrors, load
from corral.config.check import run_check
from corral.config.include import Pattern, matches
from corral.config.model import Location, ServerConfig
from corral.runtime.reload import config_files, included, plan_reload
from corral.runtime.watchrules import Change


def site(name: str, folder: str = "../www/a", binding: str = "") -> str:
    binding = binding or f"127.0.0.1:8080:{name}.test"
    return (
        f'[sites.{name}]\nbindings = ["{binding}"]\n'
        f'[sites.{name}.apps."/"]\nphysical_path = "{folder}"\n'
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "www" / "a").mkdir(parents=True)
    (tmp_path / "www" / "b").mkdir(parents=True)
    for folder in ("a", "b"):
        (tmp_path / "www" / folder / "corral.toml").write_text('[apps.app]\nengine = "python"\n')
    (tmp_path / "sites.d").mkdir()
    (tmp_path / "server.toml").write_text('[server]\ninclude = ["sites.d/*.toml"]\n')
    return tmp_path


def errors_of(config: ServerConfig) -> list[str]:
    return [
        f"{where}: {setting}: {message}"
        for item in config.included
        for where, setting, message in item.errors
    ]


def test_each_matching_file_in_name_order_its_paths_from_its_own_folder(tree: Path) -> None:
    (tree / "sites.d" / "b.toml").write_text(site("b", "../www/b"))
    (tree / "sites.d" / "a.toml").write_text(site("a"))
    (tree / "sites.d" / "a.toml~").write_text(site("backup"))  # not *.toml
    (tree / "sites.d" / ".c.toml").write_text(site("hidden"))  # an editor's: never matched
    (tree / "sites.d" / "d.toml").mkdir()  # a folder, not a site file
    config = load(str(tree / "server.toml"))
    assert [s.name for s in config.sites] == ["a", "b"]
    assert [m.physical_path for s in config.sites for m in s.mounts] == [
        str(tree / "www" / "a"),
        str(tree / "www" / "b"),
    ]
    assert [(i.path, i.sites, i.errors) for i in config.included] == [
        (str(tree / "sites.d" / "a.toml"), ("a",), ()),
        (str(tree / "sites.d" / "b.toml"), ("b",), ()),
    ]
    assert config.sites[0].location == Location(str(tree / "sites.d" / "a.toml"), 1)
    assert str(tree / "sites.d" / "a.toml") in config.sources
    assert config.include_patterns == (str(tree / "sites.d" / "*.toml"),)


def test_a_pattern_that_matches_nothing_is_fine_and_check_says_so(tree: Path) -> None:
    config = load(str(tree / "server.toml"))
    assert config.sites == () and config.included == ()
    code, text = run_check(str(tree / "server.toml"))
    assert code == 0, text
    assert "Included site files and folders:\n  (none yet)" in text
    assert f"{tree / 'server.toml'}:2: include 'sites.d/*.toml' matches nothing yet" in text


def test_site_folders_are_sites_named_after_them_with_the_include_bindings(tmp_path: Path) -> None:
    (tmp_path / "vhosts" / "example.com").mkdir(parents=True)
    (tmp_path / "vhosts" / "notes.txt").write_text("a file, not a site folder")
    (tmp_path / "server.toml").write_text(
        '[server]\ninclude = ["vhosts/*/"]\ninclude_bindings = ["*:80", "127.0.0.1:8081"]\n'
    )
    config = load(str(tmp_path / "server.toml"))
    (only,) = config.sites
    assert only.name == "example.com"
    assert [(b.address, b.port, b.hosts) for b in only.bindings] == [
        ("0.0.0.0", 80, ("example.com",)),
        ("127.0.0.1", 8081, ("example.com",)),
    ]
    assert only.mounts[0].physical_path == str(tmp_path / "vhosts" / "example.com")


def test_a_site_folder_whose_name_is_no_host_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "vhosts" / "not a host").mkdir(parents=True)
    (tmp_path / "server.toml").write_text('[server]\ninclude = ["vhosts/*/"]\n')
    config = load(str(tmp_path / "server.toml"))
    assert config.sites == ()
    (error,) = errors_of(config)
    assert error.startswith(f"{tmp_path / 'vhosts' / 'not a host'}: include: a site folder's")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[server]\nheader_timeout = 3\n\n[sites.a]\nbindings = ["127.0.0.1:80"]\n', ":1: server:"),
        ("[engines.python]\nmax_instances = 2\n[sites.a]\nbindings = []\n", ":1: engines:"),
        ("[sites.a]\nbindings = [\n", ":2: toml: malformed TOML"),
        ('[sites.a]\nbindings = ["127.0.0.1:8080"]\n', ":1: apps: site 'a' has no application"),
        ("# nothing\n", ":1: sites: the site file declares no site"),
        (site("a").replace("physical_path", "path"), ":4: path: unknown setting"),
        (site("a", "../www/none"), ":3: physical_path: no such folder"),
    ],
)
def test_a_broken_site_file_is_refused_with_file_and_line_and_the_others_load(
    tree: Path, text: str, expected: str
) -> None:
    (tree / "sites.d" / "a.toml").write_text(text)
    (tree / "sites.d" / "b.toml").write_text(site("b", "../www/b"))
    config = load(str(tree / "server.toml"))  # no ConfigErrors: only that file is refused
    assert [s.name for s in config.sites] == ["b"]
    refused = config.included[0]
    assert (refused.sites, refused.kept) == ((), False)
    assert any(e.startswith(f"{tree / 'sites.d' / 'a.toml'}{expected}") for e in errors_of(config))
    code, report = run_check(str(tree / "server.toml"))
    assert code == 1
    assert "would refuse the site files and folders named (and serve the others)" in report
    assert f"{tree / 'sites.d' / 'a.toml'}{expected}" in report


def test_a_site_name_declared_twice_refuses_the_later_file(tree: Path) -> None:
    (tree / "sites.d" / "a.toml").write_text(site("a"))
    (tree / "sites.d" / "b.toml").write_text("\n" + site("a", binding="127.0.0.1:8080:other"))
    config = load(str(tree / "server.toml"))
    assert [(s.name, s.location) for s in config.sites] == [
        ("a", Location(str(tree / "sites.d" / "a.toml"), 1))
    ]
    assert errors_of(config) == [
        f"{tree / 'sites.d' / 'b.toml'}:2: sites: site 'a' is already declared "
        f"({tree / 'sites.d' / 'a.toml'}:1)"
    ]


def test_a_site_of_the_server_file_cannot_be_declared_again_by_an_included_file(
    tree: Path,
) -> None:
    (tree / "server.toml").write_text(
        '[server]\ninclude = ["sites.d/*.toml"]\n\n' + site("a", "www/a")
    )
    (tree / "sites.d" / "a.toml").write_text(site("a", "../www/b"))
    config = load(str(tree / "server.toml"))
    assert [m.physical_path for m in config.sites[0].mounts] == [str(tree / "www" / "a")]
    a_toml = tree / "sites.d" / "a.toml"
    assert errors_of(config) == [
        f"{a_toml}:1: sites: site 'a' is already declared ({tree / 'server.toml'}:4)",
        f"{a_toml}:2: bindings: host a.test on 127.0.0.1:8080 is already bound by site 'a' "
        f"({tree / 'server.toml'}:4)",
    ]


def test_a_binding_taken_by_another_file_refuses_the_later_one_at_the_binding(
    tree: Path,
) -> None:
    (tree / "sites.d" / "a.toml").write_text(site("a", binding="127.0.0.1:8080:x.test"))
    (tree / "sites.d" / "b.toml").write_text(site("b", "../www/b", "127.0.0.1:8080:x.test"))
    config = load(str(tree / "server.toml"))
    assert [s.name for s in config.sites] == ["a"]
    assert errors_of(config) == [
        f"{tree / 'sites.d' / 'b.toml'}:2: bindings: host x.test on 127.0.0.1:8080 is already "
        f"bound by site 'a' ({tree / 'sites.d' / 'a.toml'}:1)"
    ]


@pytest.mark.parametrize(
    ("include", "expected"),
    [
        ('"*/sites/*.toml"', "a wildcard goes in the last part only"),
        ("3", "expected a list of patterns"),
        ('["/"]', "names no file or folder"),
    ],
)
def test_a_bad_pattern_is_an_error_of_the_server_file(
    tree: Path, include: str, expected: str
) -> None:
    (tree / "server.toml").write_text(f"\n[server]\ninclude = {include}\n")
    with pytest.raises(ConfigErrors) as failed:
        load(str(tree / "server.toml"))
    assert str(failed.value).startswith(f"{tree / 'server.toml'}:3: include: ")
    assert expected in str(failed.value)


def test_include_bindings_take_no_host_name_and_need_include(tree: Path) -> None:
    (tree / "server.toml").write_text(
        '[server]\ninclude = ["x/*/"]\ninclude_bindings = ["127.0.0.1:80:a.test"]\n'
    )
    with pytest.raises(ConfigErrors, match=r"server\.toml:3: include_bindings: no host name"):
        load(str(tree / "server.toml"))
    (tree / "server.toml").write_text('[server]\ninclude_bindings = ["127.0.0.1:80"]\n' + site("a"))
    with pytest.raises(ConfigErrors, match=r"server\.toml:2: include_bindings: set without"):
        load(str(tree / "server.toml"))


def test_on_a_reload_a_refused_file_keeps_its_sites_and_the_other_files_still_apply(
    tree: Path,
) -> None:
    a, b = tree / "sites.d" / "a.toml", tree / "sites.d" / "b.toml"
    a.write_text(site("a"))
    b.write_text(site("b", "../www/b"))
    before = load(str(tree / "server.toml"))
    b.write_text(site("b", "../www/a").replace("bindings", "bindigns"))
    (tree / "sites.d" / "c.toml").write_text(site("c", "../www/b"))
    a.unlink()
    after = load(str(tree / "server.toml"), previous=before)
    assert [s.name for s in after.sites] == ["b", "c"]
    assert after.sites[0] is before.sites[1]  # as it was, not as the broken file says
    kept = after.included[0]
    assert (kept.path, kept.sites, kept.kept) == (str(b), ("b",), True)
    assert [str(where) for where, _, _ in kept.errors] == [f"{b}:1", f"{b}:2"]
    # Its application is left alone; the other files' changes are applied.
    plan = plan_reload(before, after)
    assert plan.unchanged == (("b", "/", "app"),)
    assert (plan.added, plan.removed, plan.changed) == (
        (("c", "/", "app"),),
        (("a", "/", "app"),),
        (),
    )
    # Without a previous configuration (corral serve at start), it serves nothing.
    fresh = load(str(tree / "server.toml"))
    assert [s.name for s in fresh.sites] == ["c"]
    assert fresh.included[0].kept is False


def test_a_new_file_cannot_take_the_name_of_a_site_another_file_serves(tree: Path) -> None:
    (tree / "sites.d" / "m.toml").write_text(site("shop"))
    before = load(str(tree / "server.toml"))
    # "a.toml" sorts first, but "m.toml" served the site before: the newcomer is refused.
    (tree / "sites.d" / "a.toml").write_text(site("shop", "../www/b", "127.0.0.1:8081"))
    after = load(str(tree / "server.toml"), previous=before)
    assert [m.physical_path for m in after.sites[0].mounts] == [str(tree / "www" / "a")]
    assert [i.path for i in after.included] == [
        str(tree / "sites.d" / "a.toml"),
        str(tree / "sites.d" / "m.toml"),
    ]
    assert after.included[0].errors and not after.included[1].errors


def test_the_watcher_watches_the_include_folder_for_new_matching_files(tree: Path) -> None:
    (tree / "sites.d" / "a.toml").write_text(site("a"))
    files = config_files(load(str(tree / "server.toml")))
    assert str(tree / "sites.d") in files.folders
    assert files.classify(str(tree / "sites.d" / "new.toml")) is Change.OTHER
    assert files.classify(str(tree / "sites.d" / ".new.toml.swp")) is None
    assert files.classify(str(tree / "sites.d" / "new.toml~")) is None
    assert files.classify(str(tree / "other" / "new.toml")) is None


def test_an_include_folder_that_appears_later_is_a_change_of_the_server_files_folder(
    tmp_path: Path,
) -> None:
    (tmp_path / "server.toml").write_text('[server]\ninclude = ["sites.d/*.toml"]\n')
    files = config_files(load(str(tmp_path / "server.toml")))
    assert files.folders == (str(tmp_path),)  # sites.d does not exist yet
    assert files.classify(str(tmp_path / "sites.d")) is Change.OTHER
    assert files.classify(str(tmp_path / "other.d")) is None


NAMES = st.text(alphabet="ab.*?[]-_~", min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(pattern=NAMES, names=st.lists(st.text(alphabet="ab.-_~", min_size=1, max_size=6)))
def test_the_watcher_sees_exactly_the_files_glob_matches(
    tmp_path_factory: pytest.TempPathFactory, pattern: str, names: list[str]
) -> None:
    folder = tmp_path_factory.mktemp("inc")
    for name in set(names):
        if name not in (".", ".."):
            (folder / name).write_text("")
    full = os.path.join(folder, pattern)
    globbed = set(matches(Pattern(pattern, full, False, Location("x"))))
    seen = {str(path) for path in folder.iterdir() if included(str(path), full)}
    assert seen == globbed


def test_a_site_folder_served_alone_includes_nothing(tmp_path: Path) -> None:
    (tmp_path / "corral.toml").write_text('[server]\ninclude = ["sites.d/*.toml"]\n')
    with pytest.raises(ConfigErrors, match=r"corral\.toml:2: include: only a server file"):
        load(str(tmp_path))


def test_a_changed_file_cannot_take_what_an_unchanged_one_holds(tree: Path) -> None:
    a, b = tree / "sites.d" / "a.toml", tree / "sites.d" / "b.toml"
    a.write_text(site("a", binding="127.0.0.1:8080:a.test"))
    b.write_text(site("b", "../www/b", "127.0.0.1:8080:b.test"))
    before = load(str(tree / "server.toml"))
    # a.toml (first in name order) now wants b.test too: it is refused and keeps its state.
    a.write_text(site("a", binding="127.0.0.1:8080:b.test"))
    after = load(str(tree / "server.toml"), previous=before)
    assert after.sites == before.sites
    assert [(i.kept, bool(i.errors)) for i in after.included] == [(True, True), (False, False)]
    assert "host b.test on 127.0.0.1:8080 is already bound by site 'b'" in errors_of(after)[0]


FILES = ("f0", "f1", "f2")
CONTENT = st.one_of(
    st.none(),
    st.just("broken"),
    st.lists(
        st.tuples(st.sampled_from(["s0", "s1", "s2"]), st.sampled_from(["h0", "h1", "h2"])),
        min_size=1,
        max_size=2,
        unique_by=lambda item: item[0],
    ),
)


def _write_files(folder: Path, files: dict[str, object]) -> None:
    for old in folder.glob("*.toml"):
        old.unlink()
    for name, content in files.items():
        if content is None:
            continue
        if content == "broken":
            text = "[sites.x]\nbindings = [\n"
        else:
            assert isinstance(content, list)
            text = "".join(site(s, "../www/a", f"127.0.0.1:8080:{h}") for s, h in content)
        (folder / f"{name}.toml").write_text(text)


@settings(max_examples=150, deadline=None)
@given(
    first=st.fixed_dictionaries({name: CONTENT for name in FILES}),
    second=st.fixed_dictionaries({name: CONTENT for name in FILES}),
    changed=st.sets(st.sampled_from(FILES)),
)
def test_a_reload_never_touches_a_site_whose_file_did_not_change(
    tmp_path_factory: pytest.TempPathFactory,
    first: dict[str, object],
    second: dict[str, object],
    changed: set[str],
) -> None:
    root = tmp_path_factory.mktemp("reload")
    (root / "www" / "a").mkdir(parents=True)
    (root / "sites.d").mkdir()
    (root / "server.toml").write_text('[server]\ninclude = ["sites.d/*.toml"]\n')
    _write_files(root / "sites.d", first)
    before = load(str(root / "server.toml"))
    then = {name: second[name] if name in changed else first[name] for name in FILES}
    _write_files(root / "sites.d", then)
    after = load(str(root / "server.toml"), previous=before)
    # No site name and no binding twice.
    names = [s.name for s in after.sites]
    assert len(names) == len(set(names))
    keys = [(b.address, b.port, h) for s in after.sites for b in s.bindings for h in b.hosts]
    assert len(keys) == len(set(keys))
    old = {item.path: item for item in before.included}
    new = {item.path: item for item in after.included}
    by_name = {s.name: s for s in after.sites}
    for name in FILES:
        path = str(root / "sites.d" / f"{name}.toml")
        was = old.get(path)
        if was is None or not was.sites or then[name] is None:
            continue
        previous_sites = [s for s in before.sites if s.name in was.sites]
        if name not in changed or then[name] == "broken":
            # Unchanged, or broken now: exactly its sites as they were.
            assert new[path].sites == was.sites
            assert [by_name[n] for n in was.sites] == previous_sites
