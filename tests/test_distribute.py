"""Training under tf.distribute (nlptool.distribute), on one 2-core machine.

Every task trains a tiny model (tests/distributed_worker.py, no dropout) in
fresh processes: on one device; under MirroredStrategy over two logical CPU
devices; and as two worker processes of MultiWorkerMirroredStrategy on
localhost. The weights must match one device's on the same global batches
to float rounding, and be identical on both workers; a worker killed
mid-training and the job restarted must end as an uninterrupted run.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from nlptool import distribute
from nlptool.errors import UsageError

WORKER = Path(__file__).with_name("distributed_worker.py")
TASKS = ["sentiment", "language-model", "translation", "summarization"]
# Adam and SGD over 3 epochs: the replicas' sums round differently from one device's
ATOL = 5e-5


def launch(task, distribution, run_dir, out, *extra, tf_config=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    command = [sys.executable, str(WORKER), task, distribution, str(run_dir), str(out), *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process, timeout=300):
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def train(task, distribution, run_dir, out, *extra):
    code, output = finish(launch(task, distribution, run_dir, out, *extra))
    assert code == 0, output[-3000:]
    return json.loads(Path(out).read_text())


def train_workers(task, run_dir, tmp_path, *extra, extra_of=None, name="w"):
    """Two workers on localhost; (return codes, outputs, results by worker)."""
    configs = distribute.local_cluster(2)
    processes = [
        launch(
            task,
            "multi-worker",
            run_dir,
            tmp_path / f"{name}{i}.json",
            *extra,
            *(extra_of or {}).get(i, []),
            tf_config=configs[i],
        )
        for i in (0, 1)
    ]
    done = [finish(p) for p in processes]
    results = [
        json.loads((tmp_path / f"{name}{i}.json").read_text()) if (tmp_path / f"{name}{i}.json").is_file() else None
        for i in (0, 1)
    ]
    return [code for code, _ in done], [output for _, output in done], results


def assert_same_training(result, reference, atol=ATOL):
    weights, expected = dict(result["weights"]), dict(reference["weights"])
    assert weights.keys() == expected.keys()
    for name in expected:
        np.testing.assert_allclose(weights[name], expected[name], rtol=0, atol=atol, err_msg=name)
    assert [row["epoch"] for row in result["history"]] == [row["epoch"] for row in reference["history"]]
    for row, expected_row in zip(result["history"], reference["history"], strict=True):
        for key, value in expected_row.items():
            assert float(row[key]) == pytest.approx(float(value), rel=1e-4, abs=1e-6), (key, row, expected_row)


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    """Each task trained on one device, once for the module."""
    cache = {}

    def get(task):
        if task not in cache:
            folder = tmp_path_factory.mktemp(f"one-{task}")
            cache[task] = train(task, "none", folder / "run", folder / "out.json")
        return cache[task]

    return get


@pytest.mark.parametrize("task", TASKS)
def test_mirrored_over_two_devices_trains_as_one_device(task, tmp_path, one_device):
    result = train(task, "mirrored", tmp_path / "run", tmp_path / "out.json", "--logical-cpus", "2")
    assert result["replicas"] == 2
    assert_same_training(result, one_device(task))


@pytest.mark.parametrize("task", TASKS)
def test_two_workers_train_as_one_process(task, tmp_path, one_device):
    run_dir = tmp_path / "run"
    codes, outputs, (chief, other) = train_workers(task, run_dir, tmp_path)
    assert codes == [0, 0], "\n".join(o[-2000:] for o in outputs)
    assert chief["replicas"] == other["replicas"] == 2
    assert other["weights"] == chief["weights"]  # bit for bit: the workers apply the same summed gradients
    assert other["history"] == chief["history"]
    assert_same_training(chief, one_device(task))
    # only the chief writes the run directory; the other worker keeps its own state beside it
    worker_dir = distribute.worker_dir(run_dir, distribute.Worker(1, 2))
    assert worker_dir == tmp_path / ".run.worker-1" and worker_dir.is_dir()
    assert (run_dir / "training.json").is_file() and (run_dir / "checkpoints" / "best.weights.h5").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".run.worker-1"]


def test_killed_worker_and_restarted_job_end_as_an_uninterrupted_run(tmp_path, one_device):
    """Worker 1 dies (SIGKILL) after writing its backup of epoch 2 and before
    committing it, the worst moment: its backup ends at epoch 1, the chief's
    at epoch 2. The chief stops with an error instead of waiting for ever;
    the job restarted resumes both from epoch 1 and ends with the weights
    and history of an uninterrupted run."""
    run_dir = tmp_path / "run"
    epochs = ["--epochs", "4"]
    codes, outputs, _ = train_workers(
        "sentiment", run_dir, tmp_path, *epochs, extra_of={1: ["--die-after-epoch", "2"]}, name="first"
    )
    assert codes[1] == -signal.SIGKILL, outputs[1][-2000:]
    assert codes[0] != 0 and ("unhealthy" in outputs[0] or "crashed" in outputs[0]), outputs[0][-2000:]
    assert not (run_dir / "training.json").exists()
    chief_state = json.loads((run_dir / "backup" / "state.json").read_text())
    assert chief_state["generations"][0]["epoch"] == 2
    codes, outputs, (chief, other) = train_workers("sentiment", run_dir, tmp_path, *epochs, name="second")
    assert codes == [0, 0], "\n".join(o[-2000:] for o in outputs)
    uninterrupted = train("sentiment", "none", tmp_path / "one", tmp_path / "one.json", *epochs)
    assert other["weights"] == chief["weights"] and other["history"] == chief["history"]
    assert_same_training(chief, uninterrupted)


# === The parts, in this process ===


def test_replica_rows_give_each_replica_its_rows():
    batch = (tf.reshape(tf.range(5 * 3), (5, 3)), tf.range(5) * 10, tf.constant(True))
    # replica r of 4 takes rows [5r / 4, 5(r + 1) / 4) of 5: 0..0, 1..1, 2..2, 3..4
    parts = [distribute.replica_rows(batch, replica, 4) for replica in range(4)]
    assert [p[1].numpy().tolist() for p in parts] == [[0], [10], [20], [30, 40]]
    assert [p[0].numpy()[:, 0].tolist() for p in parts] == [[0], [3], [6], [9, 12]]
    assert all(bool(p[2]) for p in parts)  # a scalar goes to every replica
    assert distribute.replica_rows(batch, 0, 1) is batch


def test_class_weights_become_sample_weights():
    data = tf.data.Dataset.from_tensors((tf.constant([[1, 2], [3, 4]]), tf.constant([0, 1])))
    ((_, _, weights),) = list(distribute.with_class_weights(data, {0: 0.5, 1: 2.0}))
    assert weights.numpy().tolist() == [0.5, 2.0]
    assert distribute.with_class_weights(data, None) is data


def test_global_sum_and_clipping_are_plain_without_a_strategy():
    assert distribute.global_sum(tf.constant(3.0)).numpy() == 3.0
    optimizer_class = distribute.clip_after_sum(keras.optimizers.SGD)
    variable = tf.Variable([3.0, 4.0])
    optimizer = optimizer_class(1.0, global_clipnorm=1.0)
    optimizer.apply([tf.constant([3.0, 4.0])], [variable])  # norm 5, clipped to 1
    np.testing.assert_allclose(variable.numpy(), [3.0 - 0.6, 4.0 - 0.8], rtol=1e-6)
    assert distribute.clip_after_sum(keras.optimizers.SGD) is optimizer_class  # one class per optimizer


@pytest.mark.parametrize(
    "value, message",
    [
        (None, "TF_CONFIG environment variable, which is not set"),
        ("{not json", "TF_CONFIG is not a cluster description"),
        ('{"cluster": {"worker": ["a:1"]}}', "TF_CONFIG is not a cluster description"),
        ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}', 'names no "worker"'),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "is worker 1, which its"),
        ('{"cluster": {"worker": ["a:1"], "ps": ["b:1"]}, "task": {"type": "ps", "index": 0}}', "runs on"),
    ],
)
def test_a_bad_tf_config_is_refused_with_what_is_wrong(value, message, monkeypatch):
    if value is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        distribute.strategy("multi-worker")


def test_a_local_cluster_names_every_worker_once():
    configs = distribute.local_cluster(3)
    hosts = configs[0]["cluster"]["worker"]
    assert len(set(hosts)) == 3 and all(h.startswith("localhost:") for h in hosts)
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in range(3)]
    assert all(c["cluster"] == configs[0]["cluster"] for c in configs)


def test_worker_index_counts_the_chief_first(monkeypatch):
    spec = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
    for kind, index, expected in (("chief", 0, 0), ("worker", 0, 1), ("worker", 1, 2)):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": spec, "task": {"type": kind, "index": index}}))
        assert distribute.worker("multi-worker") == distribute.Worker(expected, 3)
        assert distribute.worker("multi-worker").chief == (expected == 0)
    assert distribute.worker("mirrored") == distribute.Worker(0, 1)


def test_a_language_model_batch_must_split_evenly(tmp_path):
    code = (
        "import tensorflow as tf\n"
        "(cpu,) = tf.config.list_physical_devices('CPU')\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        "from nlptool.models.language_model import LanguageModel\n"
        "strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])\n"
        "with strategy.scope():\n"
        "    model = LanguageModel(vocabulary_size=10, embedding_dim=4, units=4, layers=1)\n"
        "    try:\n"
        "        model.carry_states(3)\n"
        "    except ValueError as error:\n"
        "        print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "batch of 3 columns cannot be split evenly over 2 replicas" in done.stdout, done.stderr[-2000:]


def test_the_command_line_refuses_multi_worker_without_tf_config_before_writing(tmp_path, monkeypatch, capsys):
    from nlptool.cli import main

    monkeypatch.delenv("TF_CONFIG", raising=False)
    sample = Path(__file__).resolve().parents[1] / "data" / "sample_sentiment.csv"
    arguments = ["train", "sentiment", "--train-file", str(sample), "--run-dir", str(tmp_path / "run")]
    assert main([*arguments, "--distribution", "multi-worker"]) == 2
    assert "TF_CONFIG environment variable, which is not set" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
