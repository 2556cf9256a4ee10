"""petastorm-explain: an epoch the reader never reads is refused in one line."""
from petastorm.tools.explain import _main


def test_epoch_past_num_epochs_is_refused(synthetic_dataset, capsys):
    # the reader reads epochs 0..1 only: explaining epoch 5 described rows that are never read (rc 0)
    assert _main([synthetic_dataset, "--num-epochs", "2", "--epoch", "5"]) == 1
    err = capsys.readouterr().err
    assert "--epoch 5" in err and "0..1" in err
    assert len(err.strip().splitlines()) == 1


def test_last_epoch_and_unlimited_epochs_are_explained(synthetic_dataset, capsys):
    assert _main([synthetic_dataset, "--num-epochs", "2", "--epoch", "1", "--seed", "1"]) == 0
    assert "epoch 1" in capsys.readouterr().out
    assert _main([synthetic_dataset, "--num-epochs", "0", "--epoch", "7", "--seed", "1"]) == 0
    assert "epoch 7" in capsys.readouterr().out
