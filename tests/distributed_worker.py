"""One training process of tests/test_distribute.py (run as a script, not collected).

    python tests/distributed_worker.py TASK DISTRIBUTION RUN_DIR OUT.json [--logical-cpus N] [--epochs N]

Trains a tiny model of TASK on the fixtures below with
training.distribution=DISTRIBUTION into RUN_DIR and writes OUT.json: the
weights of the run's best checkpoint (this worker's own copy on a worker
other than the chief), the rows of its history.csv and its epochs. With
--logical-cpus N the CPU is split into N logical devices before TensorFlow
starts, so that MirroredStrategy has N replicas. TF_CONFIG, when set, places
the process in a cluster.
"""

import argparse
import csv
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# no dropout: with it, each replica draws its own masks, and the weights would not match one device's
FIXTURES = {
    "sentiment": {
        "train": {
            "text": [
                "good fun",
                "great cast",
                "lovely film",
                "fun and good",
                "dull plot",
                "bad acting",
                "boring film",
                "dull and bad",
                "great story",
                "awful story",
                "lovely and great",
                "boring and awful",
            ],
            "label": ["pos", "pos", "pos", "pos", "neg", "neg", "neg", "neg", "pos", "neg", "pos", "neg"],
        },
        "validation": {
            "text": ["good film", "bad plot", "great fun", "dull story"],
            "label": ["pos", "neg", "pos", "neg"],
        },
        "overrides": [
            "model.units=6",
            "model.embedding_dim=4",
            "model.dropout=0.0",
            "model.embedding_dropout=0.0",
            "tokenizer.vocab_size=40",
            "training.batch_size=4",
            "training.learning_rate=0.05",
        ],
    },
    "language-model": {
        "train": [
            "the cat sat on the mat",
            "the dog sat on the log",
            "a cat and a dog",
            "the mat and the log",
            "a dog sat",
            "the cat ran",
            "the dog ran",
            "a cat sat on a log",
        ],
        "validation": ["the cat sat on the log", "a dog ran on the mat"],
        "overrides": [
            "model.units=8",
            "model.embedding_dim=8",
            "model.layers=2",
            "model.dropout=0.0",
            "tokenizer.vocab_size=30",
            "training.batch_size=4",
            "training.window=4",
            "training.learning_rate=2",
        ],
    },
    "translation": {
        "train": {
            "source": [
                "ein hund läuft",
                "eine katze schläft",
                "der mann isst",
                "die frau liest",
                "ein kind spielt",
                "zwei hunde laufen",
                "der hund schläft",
                "die katze isst",
            ],
            "target": [
                "a dog runs",
                "a cat sleeps",
                "the man eats",
                "the woman reads",
                "a child plays",
                "two dogs run",
                "the dog sleeps",
                "the cat eats",
            ],
        },
        "validation": {"source": ["ein mann liest", "die hunde spielen"], "target": ["a man reads", "the dogs play"]},
        "overrides": [
            "tokenizer.kind=word",
            "tokenizer.vocab_size=40",
            "model.embedding_dim=8",
            "model.encoder_units=8",
            "model.decoder_units=12",
            "model.attention_units=8",
            "model.dropout=0.0",
            "training.label_smoothing=0.1",
            "training.batch_size=4",
            "training.learning_rate=0.02",
        ],
    },
    "summarization": {
        "train": {
            "text": [
                f"police in the city arrested {name} on monday after a long search"
                for name in ("smith", "jones", "brown", "taylor", "wilson", "davies", "evans", "thomas")
            ],
            "summary": [
                f"{name} arrested"
                for name in ("smith", "jones", "brown", "taylor", "wilson", "davies", "evans", "thomas")
            ],
        },
        "validation": {
            "text": ["police in the city arrested walker on monday after a long search"],
            "summary": ["walker arrested"],
        },
        "overrides": [
            "tokenizer.kind=word",
            "tokenizer.vocab_size=16",
            "model.embedding_dim=8",
            "model.encoder_units=8",
            "model.decoder_units=12",
            "model.attention_units=8",
            "model.dropout=0.0",
            "training.batch_size=4",
            "training.learning_rate=0.02",
            "training.coverage_epochs=1",
        ],
    },
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("task")
    parser.add_argument("distribution")
    parser.add_argument("run_dir")
    parser.add_argument("out")
    parser.add_argument("--logical-cpus", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--die-after-epoch", type=int, help="SIGKILL this process once its backup holds epoch N")
    args = parser.parse_args()

    import tensorflow as tf

    if args.logical_cpus:
        (cpu,) = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus)

    import pandas as pd

    import nlptool
    from nlptool import distribute, training

    if args.die_after_epoch is not None:
        import signal

        backed_up = training.Backup.on_epoch_end

        def on_epoch_end(self, epoch, logs=None):
            backed_up(self, epoch, logs)
            if epoch + 1 == args.die_after_epoch:
                os.kill(os.getpid(), signal.SIGKILL)  # as a lost machine: no clean-up, no exit code of ours

        training.Backup.on_epoch_end = on_epoch_end

    fixture = FIXTURES[args.task]
    data = {
        split: (pd.DataFrame(fixture[split]) if isinstance(fixture[split], dict) else fixture[split])
        for split in ("train", "validation")
    }
    overrides = [
        *fixture["overrides"],
        f"training.epochs={args.epochs}",
        "training.early_stopping_patience=100",
        f"training.distribution={args.distribution}",
        *args.set,
    ]
    nlptool.train(
        args.task, args.run_dir, train=data["train"], validation=data["validation"], overrides=overrides, verbose=0
    )
    worker = distribute.worker(args.distribution)
    home = Path(args.run_dir) if worker.chief else distribute.worker_dir(args.run_dir, worker)
    import h5py

    weights = []
    with h5py.File(home / "checkpoints" / "best.weights.h5", "r") as stream:
        stream.visititems(
            lambda name, item: weights.append((name, item[()].tolist())) if hasattr(item, "shape") else None
        )
    with open(home / "history.csv", encoding="utf-8") as stream:
        history = list(csv.DictReader(stream))
    made = distribute.strategy(args.distribution)
    replicas = made.num_replicas_in_sync if made is not None else 1
    result = {"weights": weights, "history": history, "worker": worker.index, "replicas": replicas}
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
