"""The kvasir command line: usage errors (exit 2) and unreadable models (exit 1, file named)."""
import os
import pathlib

import pytest

from conftest import run_cli, run_cli_json


def test_help(kvasir_bin):
    result = run_cli(kvasir_bin, "--help")
    assert result.returncode == 0
    assert "serve" in result.stdout and "generate" in result.stdout
    for command in ("serve", "generate", "tokenize"):
        result = run_cli(kvasir_bin, command, "--help")
        assert result.returncode == 0
        assert "--model" in result.stdout


def test_unknown_flag_and_command_exit_2(kvasir_bin):
    result = run_cli(kvasir_bin, "serve", "--bogus", "1")
    assert result.returncode == 2
    assert "--bogus" in result.stderr
    result = run_cli(kvasir_bin, "frobnicate")
    assert result.returncode == 2
    assert "frobnicate" in result.stderr
    result = run_cli(kvasir_bin, "serve", "--port", "notaport")
    assert result.returncode == 2
    assert "--port" in result.stderr


def check_bad_model(kvasir_bin, path):
    for args in (["generate", "--model", path, "--prompt", "Hi"],
                 ["tokenize", "--model", path, "--text", "Hi"],
                 ["serve", "--model", path, "--port", "0"]):
        result = run_cli(kvasir_bin, *args, timeout=60)
        assert result.returncode == 1, (args, result.stderr)
        assert os.path.basename(str(path)) in result.stderr, (args, result.stderr)


def test_nonexistent_model_file(kvasir_bin, tmp_path):
    check_bad_model(kvasir_bin, tmp_path / "no-such-model.gguf")


def test_truncated_gguf(kvasir_bin, model_path, tmp_path):
    truncated = tmp_path / "truncated.gguf"
    with open(model_path, "rb") as f:
        truncated.write_bytes(f.read(1 << 20))
    check_bad_model(kvasir_bin, truncated)


def test_corrupt_gguf(kvasir_bin, tmp_path):
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + os.urandom(1 << 16))
    check_bad_model(kvasir_bin, corrupt)


def test_generate_streams_text_without_json(kvasir_bin, model_path):
    result = run_cli(kvasir_bin, "generate", "--model", model_path, "--prompt", "Hello",
                     "--max-tokens", 4)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_tokenize_accepts_a_directory_holding_only_tokenizer_json(kvasir_bin, model_path):
    """The SmolLM2 tokenizer.json (made from the GGUF vocab by tools/gen_tokenizer_goldens.py)
    tokenizes like the GGUF itself."""
    repo = pathlib.Path(os.environ["KVASIR_REPO"])
    tok_dir = repo / "tests" / "fixtures" / "tokenizer" / "smollm2"
    text = "Hello world! 12345 <|im_start|>user\nnaïve café 🍕"
    from_dir = run_cli_json(kvasir_bin, "tokenize", "--model", tok_dir, "--text", text)
    from_gguf = run_cli_json(kvasir_bin, "tokenize", "--model", model_path, "--text", text)
    assert from_dir["token_ids"] == from_gguf["token_ids"]
    assert len(from_dir["token_ids"]) > 5


def test_tokenize_no_special_drops_the_bos_token(kvasir_bin):
    """DeepSeek-V3's tokenizer adds BOS (id 0) by default; --no-special adds nothing."""
    repo = pathlib.Path(os.environ["KVASIR_REPO"])
    tok_dir = repo.parent / "shared" / "fixtures" / "tokenizers" / "deepseek_v3"
    if not tok_dir.exists():
        pytest.skip(f"{tok_dir} not present")
    with_bos = run_cli_json(kvasir_bin, "tokenize", "--model", tok_dir, "--text", "Hello")
    without = run_cli_json(kvasir_bin, "tokenize", "--model", tok_dir, "--text", "Hello",
                           "--no-special")
    assert with_bos["token_ids"][0] == 0
    assert with_bos["token_ids"][1:] == without["token_ids"]
