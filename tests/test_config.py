"""avatar/config.py is the one source of limits and defaults, and the one reader of the environment."""
from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest

import cli
from avatar import config
from avatar.errors import AvatarError

REPO = Path(__file__).resolve().parents[1]


def parse(*argv):
    return cli.build_parser(argv[0]).parse_args(list(argv))


def test_say_arguments_default_to_say_settings():
    from pipelines.say import settings_from_args
    args = parse("say", "hi", "-o", "x.mp4")
    assert settings_from_args(args) == config.SAY_DEFAULTS
    assert args.person == config.DEFAULT_PERSON and args.device == config.DEFAULT_DEVICE


def test_every_job_defaults_to_the_same_device():
    jobs = [("say", "hi", "-o", "x.mp4"), ("batch", "j.jsonl", "--out", "o"),
            ("reenact", "--source", "s.mp4", "-o", "x.mp4"),
            ("evaluate", "--person", "p", "--video", "v.mp4"),
            ("train-person", "--video", "v.mp4", "--name", "n")]
    assert {parse(*job).device for job in jobs} == {config.DEFAULT_DEVICE}


def test_choices_come_from_config():
    with pytest.raises(SystemExit):
        parse("say", "hi", "-o", "x.mp4", "--blink", "sometimes")
    for mode in config.BLINK_MODES:
        assert parse("say", "hi", "-o", "x.mp4", "--blink", mode).blink == mode
    for motion in config.HEAD_MOTIONS:
        assert parse("say", "hi", "-o", "x.mp4", "--head-motion", motion).head_motion == motion


def test_batch_job_options_are_the_say_settings():
    from pipelines.runner import _OPTION_TYPES
    assert set(_OPTION_TYPES) == {f.name for f in fields(config.SaySettings)}


@pytest.mark.parametrize("options, message", [
    ({"fps": config.FPS_MAX + 1}, "fps"), ({"fps": 0.5}, "fps"), ({"size": config.MAX_SIZE + 2}, "size"),
    ({"seed": config.MAX_SEED + 1}, "seed"), ({"seed": True}, "seed"), ({"blink": "x"}, "blink"),
    ({"head_motion": "x"}, "head motion"), ({"expression_scale": float("nan")}, "expression scale"),
    ({"batch_size": 0}, "batch size"), ({"start_frame": -1}, "negative"), ({"colour": 1}, "unknown"),
])
def test_settings_out_of_range_are_refused(options, message):
    with pytest.raises(AvatarError, match=message):
        config.settings_from(options)


def test_limits_are_inclusive():
    s = config.settings_from({"fps": config.FPS_MAX, "size": config.MAX_SIZE, "seed": config.MAX_SEED,
                              "expression_scale": config.MAX_EXPRESSION_SCALE})
    assert s.fps == config.FPS_MAX and s.seed == config.MAX_SEED


def test_folders_follow_the_environment(tmp_path, monkeypatch):
    for name in ("AVATAR_HOME", "AVATAR_CACHE", "AVATAR_CHECKPOINTS", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.avatar_home() == tmp_path / ".local/share/avatar-toolkit"
    assert config.cache_dir() == tmp_path / ".cache/avatar-toolkit"
    assert (config.checkpoints_dir() / "audio2expr" / "config.json").is_file()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert config.avatar_home() == tmp_path / "xdg" / "avatar-toolkit"
    monkeypatch.setenv("AVATAR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AVATAR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AVATAR_CHECKPOINTS", str(tmp_path / "ckpt"))
    assert (config.avatar_home(), config.cache_dir(), config.checkpoints_dir()) == \
        (tmp_path / "home", tmp_path / "cache", tmp_path / "ckpt")


def _environment_reads(tree: ast.AST) -> list[int]:
    """Lines that read os.environ / os.getenv (setdefault, a write for child libraries, is not a read)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "getenv":
            lines.append(node.lineno)
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "environ" and isinstance(node.ctx, ast.Load):
            lines.append(node.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("get", "copy", "items") \
                and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "environ":
            lines.append(node.lineno)
    return lines


def test_environment_is_read_only_in_config():
    bad = []
    for folder in ("avatar", "pipelines"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == REPO / "avatar" / "config.py":
                continue
            for line in _environment_reads(ast.parse(path.read_text(encoding="utf-8"))):
                bad.append(f"{path.relative_to(REPO)}:{line}")
    assert not bad, f"environment read outside avatar/config.py: {bad}"


def test_the_environment_check_sees_reads():
    tree = ast.parse("import os\na = os.environ.get('X')\nb = os.environ['Y']\nc = os.getenv('Z')\n"
                     "os.environ.setdefault('W', '1')\n")
    assert _environment_reads(tree) == [2, 3, 4]
