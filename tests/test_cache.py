"""The build cache's limit: LRU eviction that spares builds in use or in progress, and `mixbit cache`.

Entries here are fabricated directories of known sizes; no simulator is built.
"""

import gc
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from filelock import FileLock

from mixbit.cli import main
from sim import build_cache
from sim.build_cache import claim, entries, entry_state, max_bytes, prune
from sim.runner import Build

ROOT = Path(__file__).parent.parent
DAY = 86_400


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("MIXBIT_CACHE_DIR", str(root))
    monkeypatch.delenv("MIXBIT_CACHE_MAX_GB", raising=False)
    return root


def make_entry(root: Path, kind: str, name: str, size: int, days_ago: float) -> Path:
    """An entry of ``size`` bytes (two files, one in a subfolder) last used ``days_ago``."""
    entry = root / kind / name
    (entry / "obj").mkdir(parents=True)
    with open(entry / "built.json", "wb") as half, open(entry / "obj" / "model", "wb") as rest:
        half.truncate(size // 2)  # sparse: the apparent size is what counts
        rest.truncate(size - size // 2)
    use = entry.with_name(name + ".use")
    use.touch()
    stamp = time.time() - days_ago * DAY
    os.utime(use, (stamp, stamp))
    entry.with_name(name + ".lock").touch()
    return entry


def names(root: Path) -> list[str]:
    return [e.name for e in entries(root)]


@pytest.fixture
def holder():
    """Start a process that leases an entry through sim.build_cache.claim and keeps it until the test ends."""
    started = []

    def start(entry: Path) -> subprocess.Popen:
        code = ("import sys; from pathlib import Path; from sim.build_cache import claim\n"
                "with claim(Path(sys.argv[1])) as c: pass\n"
                "print('ready', flush=True); sys.stdin.read()")
        process = subprocess.Popen([sys.executable, "-c", code, str(entry)], cwd=ROOT, text=True,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        started.append(process)
        assert process.stdout.readline().strip() == "ready"
        return process

    yield start
    for process in started:
        process.stdin.close()
        process.wait(timeout=30)
        process.stdout.close()


# The limit ------------------------------------------------------------------------------------

def test_limit_defaults_to_6_gb_and_reads_the_variable(monkeypatch):
    monkeypatch.delenv("MIXBIT_CACHE_MAX_GB", raising=False)
    assert max_bytes() == 6_000_000_000
    monkeypatch.setenv("MIXBIT_CACHE_MAX_GB", " 2.5 ")
    assert max_bytes() == 2_500_000_000
    for off in ("none", "None", "inf"):
        monkeypatch.setenv("MIXBIT_CACHE_MAX_GB", off)
        assert max_bytes() is None


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "1GB"])
def test_a_bad_limit_names_the_variable_and_value(monkeypatch, value):
    monkeypatch.setenv("MIXBIT_CACHE_MAX_GB", value)
    with pytest.raises(ValueError, match=f"MIXBIT_CACHE_MAX_GB='{value}'"):
        max_bytes()


# Eviction -------------------------------------------------------------------------------------

def test_sizes_sum_the_files_and_do_not_follow_links(cache, tmp_path):
    entry = make_entry(cache, "sim", "a", 1000, 1)
    (tmp_path / "big").write_bytes(b"x" * 100_000)
    (entry / "link").symlink_to(tmp_path / "big")
    (found,) = entries()
    assert found.kind == "sim" and found.path == entry
    assert 1000 <= found.size < 1000 + 200


def test_prune_removes_least_recently_used_first_until_under_the_limit(cache):
    for name, days in [("old", 4), ("new", 1), ("middle", 3), ("recent", 2)]:
        make_entry(cache, "verilog", name, 100, days)
    make_entry(cache, "board", "oldest", 100, 5)
    (cache / "yosys.lock").touch()
    assert names(cache) == ["oldest", "old", "middle", "recent", "new"]

    done = prune(limit=250)
    assert [e.name for e in done.removed] == ["oldest", "old", "middle"]
    assert (done.freed, done.total) == (300, 200)
    assert names(cache) == ["recent", "new"]
    left = sorted(p.name for p in (cache / "verilog").iterdir())
    assert left == ["new", "new.lock", "new.use", "recent", "recent.lock", "recent.use"]
    assert (cache / "yosys.lock").exists() and not list((cache / "board").iterdir())
    assert prune(limit=250).removed == []


def test_a_hit_records_the_last_use(cache):
    first = make_entry(cache, "sim", "first", 100, 2)
    make_entry(cache, "sim", "second", 100, 1)
    with claim(first) as hit:
        pass  # found built: no made()
    assert hit.new is False and hit.lease is not None
    hit.lease.release()
    assert names(cache) == ["second", "first"]
    assert [e.name for e in prune(limit=150).removed] == ["second"]


def test_an_entry_in_use_by_another_process_is_kept(cache, holder):
    used = make_entry(cache, "sim", "used", 100, 3)
    make_entry(cache, "sim", "idle", 100, 2)
    holder(used)  # its claim also made "used" the most recent: age it again
    os.utime(used.with_name("used.use"), (time.time() - 3 * DAY,) * 2)
    assert [entry_state(e) for e in entries()] == ["in use", ""]

    done = prune(limit=1)
    assert [e.name for e in done.skipped] == ["used"] and [e.name for e in done.removed] == ["idle"]
    assert used.is_dir() and (used / "obj" / "model").exists()


def test_an_entry_in_use_is_free_once_its_holder_ends(cache, holder):
    used = make_entry(cache, "sim", "used", 100, 3)
    process = holder(used)
    assert prune(limit=1).removed == []
    process.stdin.close()
    process.wait(timeout=30)
    assert [e.name for e in prune(limit=1).removed] == ["used"]


def test_a_build_keeps_its_lease_while_it_exists(cache):
    entry = make_entry(cache, "sim", "model", 100, 1)
    with claim(entry) as hit:
        pass
    build = Build("verilator", "top", entry, (), (hit.lease,))
    del hit
    gc.collect()
    assert prune(limit=1).removed == [] and entry.is_dir()
    del build
    gc.collect()
    assert [e.name for e in prune(limit=1).removed] == ["model"]


def test_an_entry_being_built_is_kept(cache):
    building = make_entry(cache, "sim", "building", 100, 3)
    make_entry(cache, "sim", "done", 100, 2)
    with FileLock(str(building) + ".lock"):  # how the builders before this cache locked, too
        assert [entry_state(e) for e in entries()] == ["building", ""]
        done = prune(limit=1)
        assert [e.name for e in done.skipped] == ["building"] and [e.name for e in done.removed] == ["done"]
    assert building.is_dir()


def test_the_entry_just_made_survives_the_prune_it_starts(cache, monkeypatch):
    make_entry(cache, "sim", "older", 500, 2)
    make_entry(cache, "verilog", "old", 500, 1)
    monkeypatch.setenv("MIXBIT_CACHE_MAX_GB", "0.000001")  # 1000 bytes
    entry = cache / "sim" / "fresh"
    with claim(entry) as made:
        entry.mkdir()
        (entry / "model").write_bytes(b"x" * 2000)  # alone over the limit
        made.made()
    assert names(cache) == ["fresh"]
    made.lease.release()
    assert names(cache) == ["fresh"]


def test_a_waiting_builder_never_shares_a_lock_with_a_newer_one(cache, monkeypatch):
    # The evictor unlinks a lock file it holds; a builder that opened the old file meanwhile
    # must take the lock anew on the new file, or two builders would both "hold" it.
    lock = cache / "sim" / "x.lock"
    lock.parent.mkdir(parents=True)
    first = build_cache._lock_exclusive(lock, wait=True)
    old = os.stat(lock)
    opened_old = threading.Event()
    try_flock = build_cache._try_flock

    def watched(fd: int, operation: int) -> bool:
        if threading.current_thread() is waiter and os.path.samestat(os.fstat(fd), old):
            opened_old.set()  # the waiter has the old file open and locks it next
        return try_flock(fd, operation)

    monkeypatch.setattr(build_cache, "_try_flock", watched)
    got = []
    waiter = threading.Thread(target=lambda: got.append(build_cache._lock_exclusive(lock, wait=True)))
    waiter.start()
    # An event, not a sleep: on a busy machine the waiter may not have opened the file
    # yet after any fixed time, and the test would then pass without the race it is for.
    assert opened_old.wait(timeout=60), "the waiter never opened the lock file"
    lock.unlink()
    os.close(first)
    waiter.join(timeout=60)
    assert not waiter.is_alive() and got and got[0] is not None
    assert os.path.samestat(os.fstat(got[0]), os.stat(lock))
    assert build_cache._lock_exclusive(lock, wait=False) is None
    os.close(got[0])


def test_clear_and_prune_sweep_what_an_interrupted_eviction_left(cache):
    make_entry(cache, "sim", "kept", 100, 1)
    trash = cache / "sim" / ".trash-gone-1-2"
    (trash / "obj").mkdir(parents=True)
    assert names(cache) == ["kept"]
    prune(limit=None)
    assert not trash.exists() and names(cache) == ["kept"]


# mixbit cache ---------------------------------------------------------------------------------

def test_cache_show_lists_builds_least_recently_used_first(cache, capsys):
    make_entry(cache, "sim", "pe_array-verilator-0123", 2_500_000, 1)
    oldest = make_entry(cache, "verilog", "pe_array-4567", 12_000, 3)
    board = make_entry(cache, "board", "89ab", 1_000_000_000, 2)
    with claim(board) as hit:
        pass
    os.utime(board.with_name("89ab.use"), (time.time() - 2 * DAY,) * 2)  # the claim made it the newest
    assert main(["cache"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"cache {cache}: 1.00 GB in 3 builds, limit 6.00 GB ($MIXBIT_CACHE_MAX_GB)"
    assert out[1].split() == ["last", "used", "size", "kind", "name", "(least", "recently", "used", "first)"]
    rows = [line.split() for line in out[2:]]
    assert [row[4:] for row in rows] == [["verilog", "pe_array-4567"], ["board", "89ab", "(in", "use)"],
                                         ["sim", "pe_array-verilator-0123"]]
    assert [" ".join(row[2:4]) for row in rows] == ["12.0 kB", "1.00 GB", "2.5 MB"]
    # The date of the recorded use (not of "now - 3 days": midnight may pass in between).
    used = oldest.with_name("pe_array-4567.use").stat().st_mtime
    assert rows[0][0] == time.strftime("%Y-%m-%d", time.localtime(used))
    hit.lease.release()
    assert main(["cache", "show"]) == 0 and "(in use)" not in capsys.readouterr().out


def test_cache_show_of_an_empty_cache(cache, capsys):
    assert main(["cache"]) == 0
    assert capsys.readouterr().out == f"cache {cache}: 0 B in 0 builds, limit 6.00 GB ($MIXBIT_CACHE_MAX_GB)\n"


def test_cache_clear_removes_every_build_not_in_use(cache, capsys, holder):
    make_entry(cache, "sim", "a", 300_000, 1)
    make_entry(cache, "verilog", "b", 200_000, 2)
    holder(make_entry(cache, "board", "c", 100, 3))
    assert main(["cache", "clear"]) == 0
    assert capsys.readouterr().out == "cleared 2 builds (500 kB freed), kept 1 in use or being built\n"
    assert names(cache) == ["c"]


def test_cache_prune_applies_the_limit(cache, capsys, monkeypatch):
    make_entry(cache, "sim", "a", 600_000, 1)
    make_entry(cache, "sim", "b", 600_000, 2)
    monkeypatch.setenv("MIXBIT_CACHE_MAX_GB", "0.001")
    assert main(["cache", "prune"]) == 0
    assert capsys.readouterr().out == "pruned 1 builds (600 kB freed); cache now 600 kB, limit 1.0 MB\n"
    assert names(cache) == ["a"]


@pytest.mark.parametrize("action", [[], ["prune"]])
def test_a_bad_limit_is_one_line_and_status_2(cache, capsys, monkeypatch, action):
    make_entry(cache, "sim", "a", 100, 1)
    monkeypatch.setenv("MIXBIT_CACHE_MAX_GB", "-3")
    assert main(["cache", *action]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("mixbit: error: MIXBIT_CACHE_MAX_GB='-3'")
    assert names(cache) == ["a"]


def test_an_unknown_cache_action_is_a_usage_error(cache, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["cache", "drop"])
    assert stop.value.code == 2 and capsys.readouterr().err.count("\n") == 1
