"""The `ui` command's options: local only by default, no share link, upload limit, the folders
the page may serve; bad options are one-line errors."""
import os

import pytest

import cli
from tests.ui import browser


def test_defaults_are_local_and_safe(monkeypatch):
    if os.environ.get("AVATAR_UI_TESTS") != "required":
        pytest.importorskip("gradio")
    from avatar.io import person as person_io
    from pipelines import ui
    from pipelines.ui_files import ui_root
    args = cli.build_parser("ui").parse_args(["ui"])
    page, launch = ui.build_page(args)
    assert launch["server_name"] == "127.0.0.1" and launch["server_port"] == 7860
    assert launch["share"] is False and launch["max_file_size"] == "500mb"
    assert sorted(launch["allowed_paths"]) == sorted(str(p) for p in (
        ui_root(), person_io.user_persons_root(), person_io.shipped_persons_root(),
        person_io.runs_root()))
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    assert {"Say", "Fit a person", "Batch"} <= {getattr(b, "label", None) for b in page.blocks.values()}


@pytest.mark.parametrize("argv, message", [(["--port", "0"], "--port 0 is out of range"),
                                           (["--max-upload-mb", "-1"], "--max-upload-mb -1 is out of range")])
def test_bad_options_are_one_line_errors(capsys, argv, message):
    assert cli.main(["ui", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {message}") and "\n" not in err


def test_missing_browser_is_reported_not_hidden(monkeypatch):
    monkeypatch.setattr(browser, "CHROMEDRIVER", "/nonexistent/chromedriver")
    assert browser.missing_browser()
    monkeypatch.setenv("AVATAR_UI_TESTS", "required")
    with pytest.raises(pytest.fail.Exception, match="AVATAR_UI_TESTS=required"):
        browser.need_browser()


def test_a_port_in_use_is_a_one_line_error(capsys):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.main(["ui", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot serve on 127.0.0.1:{port}") and "\n" not in err
    assert cli.main(["ui", "--host", "no-such-host.invalid"]) == 2
    assert "is not an address of this computer" in capsys.readouterr().err
