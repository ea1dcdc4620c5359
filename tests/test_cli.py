"""The command line: exit codes, messages, and files written whole or not at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from archdsl.cli import main

from helpers import ROOT, SPECS, spec_path

GOOD = spec_path("qwen3-0.6b")
BAD = """model broken {
  vocab 100
  d_model 64
  context 16
  norm rms
  block b {
    attention gqa(heads=4, kv_heads=3, head_dim=16)
    ffn swiglu(hidden=64)
  }
  layers 2 x b
}
"""


@pytest.fixture
def bad_spec(tmp_path):
    path = tmp_path / "broken.arch"
    path.write_text(BAD)
    return path


def run(*args, cwd=ROOT):
    """The installed console script, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "archdsl", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_console_script_and_module_are_the_same_program():
    module = run("--version")
    assert module.returncode == 0 and module.stdout.startswith("archdsl ")
    script = subprocess.run(["archdsl", "--version"], capture_output=True, text=True)
    assert script.stdout == module.stdout


def test_help_explains_every_command():
    result = run("--help")
    assert result.returncode == 0
    for command in ("check", "generate", "stats", "export-hf", "import-hf"):
        assert command in result.stdout
    assert "examples:" in result.stdout
    stats_help = run("stats", "--help").stdout
    assert "flops_per_token" in stats_help and "kv_cache_bytes" in stats_help


def test_usage_errors_exit_2():
    assert run().returncode == 2
    assert run("check").returncode == 2
    assert run("frobnicate").returncode == 2
    assert run("generate", GOOD).returncode == 2  # -o is required
    result = run("stats", GOOD, "--context", "0")
    assert result.returncode == 2 and "--context must be at least 1" in result.stderr


def test_bad_spec_exits_1_with_position_line_and_caret(bad_spec):
    result = run("check", bad_spec)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0].endswith("broken.arch:7:28: error: heads 4 is not divisible by kv_heads 3")
    assert "attention gqa(heads=4, kv_heads=3, head_dim=16)" in lines[1]
    assert "^^^^^^^^" in lines[2]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_missing_spec_is_an_input_error(tmp_path):
    result = run("check", tmp_path / "nope.arch")
    assert result.returncode == 1
    assert result.stderr.strip().endswith("nope.arch: no such file") and "Traceback" not in result.stderr


def test_check_is_silent_on_success_and_verbose_on_request():
    assert run("check", GOOD).stdout == ""
    out = run("check", "-v", GOOD).stdout
    assert "qwen3_0_6b: 28 layers, 596,049,920 parameters" in out


def test_check_reports_every_file(bad_spec, tmp_path):
    other = tmp_path / "other.arch"
    other.write_text(BAD.replace("broken", "other").replace("hidden=64", "hidden=0"))
    result = run("check", bad_spec, GOOD, other)
    assert result.returncode == 1
    assert "broken.arch:7:28" in result.stderr and "other.arch:8:23: error: 'hidden' must be positive, found 0" in result.stderr


def test_generate_writes_nothing_when_any_spec_is_bad(tmp_path, bad_spec, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "qwen3_0_6b.py").write_text("# an old file\n")
    assert main(["generate", str(GOOD), str(bad_spec), "-o", str(out)]) == 1
    assert (out / "qwen3_0_6b.py").read_text() == "# an old file\n"
    assert sorted(p.name for p in out.iterdir()) == ["qwen3_0_6b.py"]
    assert "kv_heads 3" in capsys.readouterr().err


def test_generate_check_lists_missing_and_stale_files(tmp_path, capsys):
    out = tmp_path / "out"
    specs = [str(spec_path("qwen3-0.6b")), str(spec_path("gpt2-124m"))]
    assert main(["generate", *specs, "-o", str(out), "--check"]) == 1
    assert not out.exists()  # --check writes nothing
    assert main(["generate", *specs, "-o", str(out)]) == 0
    assert main(["generate", *specs, "-o", str(out), "--check"]) == 0
    (out / "gpt2_124m.py").write_text((out / "gpt2_124m.py").read_text() + "# edited\n")
    (out / "qwen3_0_6b.py").unlink()
    capsys.readouterr()
    assert main(["generate", *specs, "-o", str(out), "--check"]) == 1
    err = capsys.readouterr().err
    assert "qwen3_0_6b.py: missing" in err and "gpt2_124m.py: differs" in err


def test_generate_into_something_that_is_not_a_directory(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["generate", str(GOOD), "-o", str(target)]) == 1
    assert "is not a directory" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_generate_into_a_read_only_directory(tmp_path, capsys):  # pragma: no cover - CI runs as root
    out = tmp_path / "ro"
    out.mkdir(mode=0o500)
    assert main(["generate", str(GOOD), "-o", str(out)]) == 1
    assert "permission denied" in capsys.readouterr().err


def test_two_specs_for_one_module_are_refused(tmp_path, capsys):
    copy = tmp_path / "copy.arch"
    copy.write_text(GOOD.read_text())
    assert main(["generate", str(GOOD), str(copy), "-o", str(tmp_path / "out")]) == 1
    assert "both define model 'qwen3_0_6b'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_stats_json_has_the_contract_keys(capsys):
    assert main(["stats", str(spec_path("gemma3-27b")), "--format", "json", "--context", "4096", "--dtype", "fp32"]) == 0
    data = json.loads(capsys.readouterr().out)
    for key in ("total_params", "active_params", "embedding_params", "per_layer", "kv_cache_bytes_per_token", "kv_cache_bytes", "flops_per_token"):
        assert key in data
    assert data["total_params"] == 27_009_346_304 and len(data["per_layer"]) == 62
    # 52 local layers keep at most 1024 tokens, 10 global layers all 4096: 2 · 16 heads · 128 · 4 bytes per token
    per_token = 2 * 16 * 128 * 4
    assert data["kv_cache_bytes"] == 52 * per_token * 1024 + 10 * per_token * 4096


def test_stats_text_is_a_table(capsys):
    assert main(["stats", str(spec_path("llama-3-8b"))]) == 0
    out = capsys.readouterr().out
    assert "total parameters" in out and "8,030,261,248" in out


def test_export_and_import_hf(tmp_path, capsys):
    config = tmp_path / "config.json"
    assert main(["export-hf", str(spec_path("smollm3-3b")), "-o", str(config)]) == 0
    data = json.loads(config.read_text())
    assert data["model_type"] == "smollm3" and data["no_rope_layers"][:4] == [1, 1, 1, 0]
    spec = tmp_path / "smol.arch"
    assert main(["import-hf", str(config), "-o", str(spec), "--name", "smol"]) == 0
    text = spec.read_text()
    assert text.startswith("# Imported by archdsl import-hf from ") and "model smol {" in text
    assert main(["check", str(spec)]) == 0
    assert main(["export-hf", str(spec), "-o", "-"]) == 0
    assert json.loads(capsys.readouterr().out) == data


def test_import_hf_bad_input(tmp_path, capsys):
    broken = tmp_path / "config.json"
    broken.write_text('{"model_type": "llama",\n  "hidden_size": }')
    assert main(["import-hf", str(broken), "-o", str(tmp_path / "x.arch")]) == 1
    assert "config.json:2:18: error: invalid JSON: Expecting value" in capsys.readouterr().err
    broken.write_text('{"model_type": "t5"}')
    assert main(["import-hf", str(broken), "-o", str(tmp_path / "x.arch")]) == 1
    assert "model_type 't5' is not supported by import-hf" in capsys.readouterr().err
    assert not (tmp_path / "x.arch").exists()


# ---- a Hugging Face config wherever a spec goes -------------------------------------------------


@pytest.fixture
def config_dir(tmp_path):
    """A model directory as the Hub lays it out: config.json (and weights, not needed here)."""
    directory = tmp_path / "Qwen3-0.6B"
    directory.mkdir()
    assert main(["export-hf", str(GOOD), "-o", str(directory / "config.json")]) == 0
    return directory


def test_stats_diff_and_check_take_a_config(config_dir, capsys):
    assert main(["stats", str(config_dir), "--format", "json"]) == 0
    from_dir = json.loads(capsys.readouterr().out)
    assert main(["stats", str(config_dir / "config.json"), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == from_dir
    assert main(["stats", str(GOOD), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_params"] == from_dir["total_params"] == 596_049_920
    assert main(["diff", str(GOOD), str(config_dir)]) == 0
    assert "identical: no architectural difference" in capsys.readouterr().out
    assert main(["check", str(config_dir), "-v"]) == 0
    assert capsys.readouterr().out.startswith(f"{config_dir.as_posix()}: qwen3_0_6b: 28 layers")


def test_generate_from_a_config_directory(config_dir, tmp_path):
    assert main(["generate", str(config_dir), "-o", str(tmp_path / "out"), "--tiny"]) == 0
    assert (tmp_path / "out" / "qwen3_0_6b.py").is_file()
    assert main(["generate", str(config_dir), "-o", str(tmp_path / "out"), "--tiny", "--check"]) == 0


def test_a_config_that_cannot_be_read_is_an_input_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run("stats", tmp_path / "empty")
    assert result.returncode == 1 and "is a directory without a config.json" in result.stderr
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    result = run("stats", tmp_path / "bert")
    assert result.returncode == 1 and "config.json: error: model_type 'bert' is not supported" in result.stderr
    (tmp_path / "broken.json").write_text("{")
    result = run("diff", GOOD, tmp_path / "broken.json")
    assert result.returncode == 1 and "broken.json:1:2: error: invalid JSON" in result.stderr and "Traceback" not in result.stderr
