"""The `tttlab` console script: help at every level, the command table, and one-line errors with exit code 2."""
import importlib.util
import shutil
import subprocess
import sys

import pytest

from tttlab.cli import ARC_COMMANDS, COMMANDS, SOLVE_METHODS, main


def run(capsys, *argv):
    "Run the CLI in-process; return (exit code, stdout, stderr)."
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_console_script_help():
    exe = shutil.which("tttlab")
    cmd = [exe] if exe else [sys.executable, "-c", "import sys; from tttlab.cli import main; sys.exit(main())"]
    p = subprocess.run(cmd + ["--help"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    for name in [*COMMANDS, "arc"]: assert f"  {name}" in p.stdout
    assert "TinyLlama" in p.stdout


@pytest.mark.parametrize("argv", [["fly"], ["arc", "fly"], ["arc", "solve", "--method", "magic"]])
def test_unknown_names_are_one_line(capsys, argv):
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "error" in err


def test_help_at_every_level(capsys):
    rc, out, _ = run(capsys)
    assert rc == 2 and "usage: tttlab" in out  # no command: help, and a non-zero code for scripts
    rc, out, _ = run(capsys, "arc", "--help")
    assert rc == 0 and all(f"  {k}" in out for k in ARC_COMMANDS) and "--method llm-ttt" in out


TABLE = [([k], c) for k, c in COMMANDS.items()] + [(["arc", k], c) for k, c in ARC_COMMANDS.items() if k != "solve"] \
    + [(["arc", "solve", "--method", k], c) for k, c in SOLVE_METHODS.items()]


@pytest.mark.parametrize("argv,cmd", TABLE, ids=[" ".join(a) for a, _ in TABLE])
def test_every_command_is_wired(capsys, argv, cmd):
    "An installed command prints its --help and exits 0 (a missing dependency fails); a missing one says so, exit 2."
    installed = importlib.util.find_spec(cmd.module) is not None
    try: rc, out, err = run(capsys, *argv, "--help")
    except SystemExit as e:  # argparse's --help exits 0 from inside the command
        rc, out, err = e.code, *capsys.readouterr()
    if installed:
        assert rc == 0, err
        assert "usage" in out.lower(), out
    else:
        assert rc == 2
        assert len(err.strip().splitlines()) == 1, err
        assert "not available" in err, err


def test_learn_missing_file_is_one_line(capsys, tmp_path):
    rc, out, err = run(capsys, "learn", str(tmp_path / "missing.pdf"), "--model", "tiny")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "missing.pdf" in err


def test_learn_bad_pdf_is_one_line(capsys, tmp_path):
    from tttlab.document import write_text_pdf
    secret = tmp_path / "secret.pdf"
    secret.write_bytes(write_text_pdf("Facts about tides. " * 30, password="pw"))
    rc, out, err = run(capsys, "learn", str(secret), "--model", "tiny")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "encrypted" in err and "--password" in err
    rc, out, err = run(capsys, "learn", str(secret), "--model", "tiny", "--password", "pw", "--chunk-size", "256", "--ask", "Tides?",
                       "--max-tokens", "2")
    assert rc == 0 and "secret.pdf: 1 page(s)" in out, err


def test_recall_lact_settings_need_lact(capsys, tmp_path):
    with pytest.raises(SystemExit) as e: main(["recall", "doc.pdf", "qa.json", "--strategy", "lora", "--anchor", "1"])
    assert e.value.code == 2 and "--anchor only tune lact" in capsys.readouterr().err


def test_learn_blank_question_is_refused_before_learning(capsys):
    with pytest.raises(SystemExit) as e: main(["learn", "sample", "--model", "tiny", "--ask", "  "])
    assert e.value.code == 2 and "a question needs some text" in capsys.readouterr().err


def test_learn_bad_setting_is_one_line(capsys):
    rc, out, err = run(capsys, "learn", "sample", "--model", "tiny", "--chunk-size", "0")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "chunk_size" in err


def test_learn_sample_with_tiny_model(capsys):
    rc, out, err = run(capsys, "learn", "sample", "--model", "tiny", "--chunk-size", "256", "--epochs", "1", "--max-tokens", "4",
                       "--ask", "Who built the observatory?", "--ask", "When?")
    assert rc == 0, err
    assert "sample.pdf: 1 page(s)" in out and "context cleared" in out
    assert out.count("  TTT : ") == 2 and out.count("  base: ") == 2  # free questions: no ✓/✗
