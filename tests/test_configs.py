"""The shipped configs: found by name for their task, listed by `nlptool configs`, valid for their task, and
the same resolution in the command line and the Python API."""

import pytest

from nlptool import api, configs, tasks
from nlptool import config as config_lib
from nlptool.cli import main
from nlptool.errors import UsageError


def test_every_shipped_config_belongs_to_a_task_and_resolves_for_it():
    shipped = configs.shipped()
    assert {config.task for config in shipped} == set(tasks.names())
    assert len(shipped) == len(list(configs._directory().glob("*.yaml")))  # no file left unclaimed
    for config in shipped:
        config_class = tasks.get(config.task).config_class
        by_name = config_lib.resolve(config_class, [configs.find(config.name, config.task)])
        assert by_name == config_lib.resolve(config_class, [config.path])
        assert config.summary  # every file opens with a comment saying what it is


def test_find_by_short_name_by_file_stem_and_by_path(tmp_path):
    sst2 = configs.find("sst2", "sentiment")
    assert sst2.name == "sentiment_sst2.yaml" and sst2.is_file()
    assert configs.find("sentiment_sst2", "sentiment") == sst2
    assert configs.find("imdb", "language-model").name == "language_model_imdb.yaml"  # the task decides
    mine = tmp_path / "mine.yaml"
    mine.write_text("training:\n  epochs: 2\n")
    assert configs.find(str(mine), "sentiment") == mine
    assert configs.find("missing.yaml", "sentiment").name == "missing.yaml"  # a path: its reader reports it


def test_an_unknown_name_is_refused_with_the_names_there_are():
    with pytest.raises(UsageError, match=r"'sst3' is neither a file nor a shipped sentiment config \(those are: "
                                         r"demo, imdb, sst2; see `nlptool configs`\)"):  # fmt: skip
        configs.find("sst3", "sentiment")
    with pytest.raises(UsageError, match="shipped translation config"):
        configs.find("sst2", "translation")  # a name of another task


def test_cli_lists_the_configs_and_refuses_an_unknown_one(capsys, tmp_path):
    assert main(["configs", "summarization"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["bbc_news_summary", "gigaword"]
    assert all(line.split()[0] == "summarization" for line in lines)
    csv = tmp_path / "data.csv"
    csv.write_text("text,label\na,x\nb,y\n")
    code = main(["train", "sentiment", "--train-file", str(csv), "--config", "sst3", "--run-dir", str(tmp_path / "r")])
    assert code == 2
    assert "'sst3' is neither a file nor a shipped sentiment config" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before anything is written


def test_the_api_resolves_names_as_the_cli_does():
    task = tasks.get("sentiment")
    by_name = api._resolve(task, ["sst2", "demo"], ["training.seed=7"])
    by_path = config_lib.resolve(
        task.config_class, [configs.find("sst2", task.name), configs.find("demo", task.name)], ["training.seed=7"]
    )
    assert by_name == by_path
    assert (by_name.model.units, by_name.training.epochs, by_name.tokenizer.max_length) == (64, 2, 64)
