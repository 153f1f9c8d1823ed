"""``ivnext-depth`` argument and config handling."""
import pytest

from ivnext_world.cli.depth import _ep_list, main


def test_cli_train_rejects_an_unknown_config_key(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "head.nbins=3"])
    assert e.value.code == 2 and "head.nbins" in capsys.readouterr().err


def test_episode_ranges():
    assert _ep_list(["0-3", "7"]) == [0, 1, 2, 3, 7]
    assert _ep_list(None) is None
