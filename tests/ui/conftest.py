import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """The page's requests, fits, persons and runs go to a temp $AVATAR_HOME, never the real one."""
    monkeypatch.setenv("AVATAR_HOME", str(tmp_path_factory.getbasetemp() / "avatar-home"))
