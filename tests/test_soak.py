"""``fumd soak``: its exit status reports the daemon's (the JSON alone hid a daemon that died)."""
from __future__ import annotations

from pathlib import Path

from fumd.cli import main


def test_soak_fails_when_the_daemon_fails(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[learning]\neta = -1.0\n")  # the daemon refuses to start
    code = main(["soak", "--cycles", "5", "--neurons", "300", "--state-dir", str(tmp_path / "work"),
                 "--config", str(bad), "--sample-seconds", "0.2"])
    captured = capsys.readouterr()
    assert code == 1
    assert '"exit_code": 2' in captured.out and "the daemon exited with 2" in captured.err
    assert "eta" in (tmp_path / "work" / "daemon.log").read_text()
