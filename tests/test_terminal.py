"""What reaches the terminal: control characters escaped, long paths shortened, and the environment
tidied (thread variables that are no counts, a HOME matplotlib cannot write) with one note each.

Each case goes through the real entry point: in-process (``run_cli``) for the lines lstmbt prints,
and the ``lstmbt`` script in a subprocess where the noise comes from libraries loading (libgomp,
matplotlib), which an in-process call cannot show once the test process has loaded them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lstmbt.backtest.errors import PATH_LIMIT

from helpers import LINEAR_FLAGS, set_args

#: a path of 20,000 characters (folders of 200), none of which exists
LONG = "/" + "/".join(["d" * 199] * 100)
#: what a terminal must never receive raw: ESC, BEL, CR, a C1 control, DEL, a bidi override
CONTROLS = "\x1b\x07\r\x9b\x7f\u202e"


def test_printable_shows_every_control_character_as_a_visible_escape():
    from lstmbt.backtest.errors import printable

    assert printable("a\x1b[2Jb\x07c\rd\x9be\x7ff\u202eg\u2066h\x00i") == (
        "a\\x1b[2Jb\\x07c\\x0dd\\x9be\\x7ff\\u202eg\\u2066h\\x00i")
    assert printable(os.fsdecode(b"bad\xff")) == "bad\\xff"  # a byte that is not UTF-8, as a file name keeps it
    assert printable("résumé ✓ 日本") == "résumé ✓ 日本"  # printable text is left alone


def test_terminal_line_is_one_bounded_line_with_long_words_shortened():
    from lstmbt.backtest.errors import PATH_LIMIT, shorten, terminal_line

    path = "/data/" + "x" * 1000 + "/prices.csv"
    line = terminal_line(f"error: {path} is missing\n  second line; check the path")
    assert line == f"error: {shorten(path)} is missing second line; check the path"
    assert len(shorten(path)) == PATH_LIMIT and shorten(path).endswith("/prices.csv") and "..." in shorten(path)
    long = terminal_line("word " * 1000 + "the fix")
    assert len(long) == 1000 and long.endswith("the fix")


@pytest.mark.parametrize("argv, ends", [
    (["run", "--config", f"{LONG}/c.toml"], "/c.toml has too long a name; choose a shorter path"),
    (["run", "--source", f"csv:{LONG}/x.csv"], "/x.csv has too long a name; choose a shorter path"),
    (["report", LONG], "/config.toml has too long a name; choose a shorter path"),
    (["runs", "list", "--root", LONG], " has too long a name; choose a shorter path"),
    (["run", "--source", "sample:sp500", "--quick", "--out", f"{LONG}/out"], "/out has too long a name; choose a "
                                                                             "shorter path"),
])
def test_a_20000_character_path_is_shortened_in_its_error_line(argv, ends, tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(argv)
    assert code == 2 and "Traceback" not in err, err
    line = err.strip()
    assert "\n" not in line and line.startswith("error: ") and line.endswith(ends), line
    assert len(line) < PATH_LIMIT + 200 and "d" * 50 in line and "..." in line  # head and tail, not 20,000
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [
    ["run", "--config", f"c{CONTROLS}.toml"],
    ["report", f"run{CONTROLS}"],
    ["run", f"--sorce{CONTROLS}", "x"],
    ["run", "--set", f"data.sourc{CONTROLS}=1"],
])
def test_control_characters_in_an_error_line_are_escaped(argv, tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(argv)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not any(c in out + err for c in CONTROLS), err.encode()
    assert "\\x1b" in err or "\\x1b" in err.replace("\\\\", "\\"), err  # shown, as repr or as an escape
    assert list(tmp_path.iterdir()) == []


def test_thread_variables_that_are_no_counts_are_dropped_with_one_note_each(tmp_path, monkeypatch, run_cli):
    monkeypatch.setenv("OMP_NUM_THREADS", "abc")
    monkeypatch.setenv("MKL_NUM_THREADS", f"-1{CONTROLS}")
    (tmp_path / "runs").mkdir()
    code, out, err = run_cli(["runs", "list", "--root", str(tmp_path / "runs")])
    assert code == 0 and out.startswith("0 runs under"), err
    assert err.strip().splitlines() == [
        "note: OMP_NUM_THREADS='abc' is not a thread count (a whole number from 1), so it is ignored and lstmbt "
        "chooses the count; set it to a number such as 2, or unset it",
        "note: MKL_NUM_THREADS='-1\\x1b\\x07\\r\\x9b\\x7f\\u202e' is not a thread count (a whole number from 1), so "
        "it is ignored and lstmbt chooses the count; set it to a number such as 2, or unset it"]
    assert "OMP_NUM_THREADS" not in os.environ and "MKL_NUM_THREADS" not in os.environ


@pytest.mark.parametrize("value", ["4", "4,2", " 2 "])
def test_a_thread_count_the_user_chose_is_kept_without_a_note(value, tmp_path, monkeypatch, run_cli):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    code, out, err = run_cli(["runs", "list", "--root", str(tmp_path)])
    assert code == 0 and err == "" and os.environ["OMP_NUM_THREADS"] == value


def test_an_unwritable_matplotlib_folder_gives_one_note_and_a_temporary_one(tmp_path, monkeypatch, run_cli):
    (tmp_path / "home").write_text("a file where HOME's folders would go")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _no_matplotlib_dir(monkeypatch)
    code, out, err = run_cli(["runs", "list", "--root", str(tmp_path)])
    assert code == 0 and err.strip() == (
        f"note: matplotlib cannot write {tmp_path}/home/.config/matplotlib, so it uses a temporary folder for this "
        "command; set MPLCONFIGDIR (or HOME) to a writable folder to keep its font cache between commands"), err
    assert Path(os.environ["MPLCONFIGDIR"]).is_dir() and os.access(os.environ["MPLCONFIGDIR"], os.W_OK)


def test_a_writable_home_is_left_alone(tmp_path, monkeypatch, run_cli):
    monkeypatch.setenv("HOME", str(tmp_path / "new-home"))  # not there yet, but it can be made
    _no_matplotlib_dir(monkeypatch)
    code, out, err = run_cli(["runs", "list", "--root", str(tmp_path)])
    assert code == 0 and err == "" and os.environ["MPLCONFIGDIR"] == "" and not (tmp_path / "new-home").exists()


def _no_matplotlib_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """matplotlib's folders from HOME alone; an empty MPLCONFIGDIR counts as unset (for matplotlib
    too), and setting it here has the monkeypatch restore what the command sets."""
    monkeypatch.setenv("MPLCONFIGDIR", "")
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.slow
def test_no_openmp_or_matplotlib_noise_reaches_a_real_run(tmp_path):
    """The script in a fresh process, so torch, scikit-learn and matplotlib really load under the
    bad environment: a linear-only run, whose only lines on stderr are lstmbt's notes."""
    (tmp_path / "home").write_text("not a folder")
    env = {**os.environ, "OMP_NUM_THREADS": "abc", "MKL_NUM_THREADS": "0", "HOME": str(tmp_path / "home"),
           "TMPDIR": str(tmp_path)}
    for name in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "LSTMBT_DEBUG"):
        env.pop(name, None)
    script = Path(sys.executable).with_name("lstmbt")
    done = subprocess.run([str(script), "run", *set_args(LINEAR_FLAGS), "--out", str(tmp_path / "run")],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    noise = ("libgomp: Invalid value", "Matplotlib created a temporary", "mkdir -p failed", "Traceback")
    assert not any(words in done.stderr for words in noise), done.stderr
    notes = [line for line in lines if line.startswith("note: ")]
    assert [n.split()[1] for n in notes[:3]] == ["OMP_NUM_THREADS='abc'", "MKL_NUM_THREADS='0'", "matplotlib"], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "run"]  # the temporary folder went at exit
