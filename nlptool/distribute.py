"""Training on several devices or hosts with tf.distribute.

`training.distribution` chooses how a run trains:

    none          one device of one machine, through Keras's `fit`
    mirrored      `MirroredStrategy`: every GPU of this machine (or every
                  logical CPU device, when there is no GPU), one replica each
    multi-worker  `MultiWorkerMirroredStrategy`: one process per host, the
                  cluster and this process's place in it read from TF_CONFIG

Under a strategy the run trains through `fit` here, nlptool's own loop on
`strategy.run`, because Keras's `fit` cannot train under
`MultiWorkerMirroredStrategy` with the pinned versions (the record is in
docs/experiments/2026-12-07-distribution.md). The loop drives the same
callbacks as Keras's `fit` (backup, checkpoint, early stopping, history,
TensorBoard), so resuming, the checkpoint and the time budget behave as on
one device. What it guarantees:

* Same steps as one device. The config's batch size is the global batch:
  every worker reads the same batches, and each replica takes its own
  contiguous rows of each (`replica_rows`). Gradients are summed over
  the replicas; each task's loss is divided by the global batch's count
  (examples, or target tokens through `global_sum`), and gradient clipping
  acts on the summed gradient (`ClipAfterSum`). Without dropout the
  weights match one device's on the same batches to float rounding; with
  dropout each replica draws its own masks.
* Exact logs: every logged value is read from the metrics' variables summed
  over all replicas, so a validation loss is the one of the whole
  validation set, and every worker sees the same value.
* One decision: the time budget reads the slowest worker's clock, and a
  stop on any worker stops them all after the same epoch, so no worker
  waits for another that stopped. A resumed job starts from the newest
  epoch that every worker's backup holds.
* Only the chief writes the run directory. Every other worker keeps its
  own state (its backup, so that it resumes) in `worker_dir`, which a
  normal end of training removes.
"""

import dataclasses
import functools
import json
import os
import time
from pathlib import Path

from nlptool.errors import UsageError

DISTRIBUTIONS = ("none", "mirrored", "multi-worker")

_strategies: dict[str, object] = {}  # the strategy this process created, by distribution: at most one


def strategy(distribution):
    """The tf.distribute strategy of `distribution` (None for "none"),
    created once per process. Raises UsageError when TF_CONFIG does not
    describe a cluster, or when this process cannot take the strategy."""
    if distribution not in DISTRIBUTIONS:
        raise UsageError(f"Unknown distribution {distribution!r}; choose one of {', '.join(DISTRIBUTIONS)}.")
    if distribution == "none":
        return None
    if distribution in _strategies:
        return _strategies[distribution]
    if _strategies:
        (other,) = _strategies
        raise UsageError(
            f"This process trains with distribution {other!r} already; a process takes one distribution. "
            f"Start a new process for {distribution!r}."
        )
    import tensorflow as tf

    if distribution == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        made = tf.distribute.MirroredStrategy([device.name for device in devices])
    else:
        cluster()  # a clear message for a missing or malformed TF_CONFIG
        try:
            made = tf.distribute.MultiWorkerMirroredStrategy()
        except (RuntimeError, ValueError) as error:
            raise UsageError(
                f"MultiWorkerMirroredStrategy cannot start in this process ({error}). It must be created "
                "before TensorFlow runs anything: train with distribution multi-worker in a fresh process "
                "(`nlptool train ...`, or `nlptool.train` before any other TensorFlow work)."
            ) from None
    _strategies[distribution] = made
    return made


def cluster():
    """(cluster spec, task type, task index) from TF_CONFIG; UsageError saying what is wrong."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise UsageError(
            "distribution multi-worker reads the cluster from the TF_CONFIG environment variable, which is not "
            'set. Set it on every worker, e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}\' (see the scale-out guide).'
        )
    try:
        config = json.loads(raw)
        spec, task = config["cluster"], config["task"]
        kind, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(
            f"TF_CONFIG is not a cluster description ({type(error).__name__}: {error}); it needs "
            '"cluster" (job name -> list of host:port) and "task" ({"type": ..., "index": ...}).'
        ) from None
    if not isinstance(spec, dict) or not any(spec.get(job) for job in ("worker", "chief")):
        raise UsageError('TF_CONFIG\'s "cluster" names no "worker" (or "chief") hosts.')
    if kind not in spec or not 0 <= index < len(spec[kind]):
        raise UsageError(
            f'TF_CONFIG\'s "task" is {kind} {index}, which its "cluster" does not list '
            f"({ {job: len(hosts) for job, hosts in spec.items()} })."
        )
    if kind not in ("worker", "chief"):
        raise UsageError(
            f'TF_CONFIG\'s "task" is a {kind!r}; multi-worker training runs on "chief" and "worker" tasks.'
        )
    return spec, kind, index


def local_cluster(count):
    """The TF_CONFIG of each of `count` workers on this machine (localhost,
    free ports), to try multi-worker training without a cluster."""
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    hosts = [f"localhost:{s.getsockname()[1]}" for s in sockets]
    for s in sockets:
        s.close()
    return [{"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}} for index in range(count)]


@dataclasses.dataclass(frozen=True)
class Worker:
    """This process's place among the training processes: `index` from 0
    (the chief) to `count` - 1."""

    index: int = 0
    count: int = 1

    @property
    def chief(self):
        return self.index == 0


def worker(distribution):
    """This process's `Worker` under `distribution` (the chief, alone, unless multi-worker)."""
    if distribution != "multi-worker":
        return Worker()
    spec, kind, index = cluster()
    chiefs = len(spec.get("chief", []))
    count = chiefs + len(spec.get("worker", []))
    return Worker(index if kind == "chief" else chiefs + index, count)


def worker_dir(run_dir, worker):
    """Where a worker other than the chief keeps its own state (its backup and
    history): beside the run directory, which only the chief writes."""
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.worker-{worker.index}"


def check_same(strategy, worker, run_dir, folders):
    """Raise RunError unless every worker prepared the same tokenisers and
    labels (the tokenizer.json of `folders` and labels.json in its
    `run_dir`): each learns them from the data
    itself, and different data on one worker would train a model whose
    replicas disagree on what an id means. A collective: every worker calls it."""
    if worker.count == 1:
        return
    import hashlib

    from nlptool.errors import RunError

    digest = hashlib.sha256()
    paths = [Path(run_dir) / folder / "tokenizer.json" for folder in sorted(folders.values())]
    for path in [*paths, Path(run_dir) / "labels.json"]:
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    mine = int.from_bytes(digest.digest()[:6], "big")  # 48 bits: exact in a float64
    values = gathered(strategy, worker)(mine)
    if any(value != values[0] for value in values):
        raise RunError(
            f"The workers prepared different tokenisers (worker {worker.index}: {mine:012x}; all: "
            f"{sorted({f'{int(v):012x}' for v in values})}): every worker must read the same data and config."
        )


# === Data ===


def replica_rows(element, replica, replicas):
    """The rows of `element` (a global batch: a nest of tensors) that replica
    `replica` of `replicas` trains on: replica r of R takes rows
    [r n / R, (r + 1) n / R) of a batch of n rows, the same rows whichever
    worker holds it (a scalar of the batch goes to every replica). A
    language model's windows thus keep their columns on the same replica
    from one step to the next. Every worker reads the same global batches.

    The step slices the batch itself instead of reading a distributed
    dataset: iterating one (`distribute_datasets_from_function`) on the
    pinned TensorFlow leaves every function traced afterwards in the
    process twice as slow on CPU, with half its time in page faults
    (docs/experiments/2026-12-07-distribution.md)."""
    import tensorflow as tf

    if replicas == 1:
        return element
    batched = [t for t in tf.nest.flatten(element) if t.shape.rank != 0]
    rows = tf.shape(batched[0], out_type=tf.int32)[0]
    replica = tf.cast(replica, tf.int32)
    low, high = replica * rows // replicas, (replica + 1) * rows // replicas
    return tf.nest.map_structure(lambda t: t if t.shape.rank == 0 else t[low:high], element)


def with_class_weights(dataset, class_weight):
    """(x, y) batches -> (x, y, weight of y's class), as `fit(class_weight=)` weighs them."""
    import tensorflow as tf

    if not class_weight:
        return dataset
    table = tf.constant([float(class_weight.get(i, 1.0)) for i in range(max(class_weight) + 1)])
    return dataset.map(lambda x, y: (x, y, tf.gather(table, tf.cast(y, tf.int32))))


# === What the models' steps call ===


def global_sum(value):
    """`value` summed over the replicas in sync (itself outside a strategy,
    or with one replica): the global batch's count of examples or target
    tokens, by which a replica divides its summed loss so that the summed
    gradients are those of the global batch."""
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


@functools.cache
def clip_after_sum(optimizer_class):
    """`optimizer_class` with its global-norm clipping applied to the
    gradient summed over the replicas, as one device clips the gradient of
    the whole batch. Keras clips each replica's gradient before the sum;
    with R replicas that clips at R times the intended norm or not at all.
    Costs a second all-reduce per step, only under a strategy with clipping."""
    import tensorflow as tf

    class ClipAfterSum(optimizer_class):
        def apply(self, grads, trainable_variables=None):
            context = tf.distribute.get_replica_context()
            if context is None or context.num_replicas_in_sync == 1 or self.global_clipnorm is None:
                return super().apply(grads, trainable_variables)
            grads = list(grads)
            present = [i for i, g in enumerate(grads) if g is not None]
            summed = context.all_reduce(tf.distribute.ReduceOp.SUM, [grads[i] for i in present])
            clipped, _ = tf.clip_by_global_norm(summed, self.global_clipnorm)
            share = 1.0 / context.num_replicas_in_sync  # the optimizer sums the replicas' shares again
            for i, gradient in zip(present, clipped, strict=True):
                grads[i] = gradient * tf.cast(share, gradient.dtype)
            return super().apply(grads, trainable_variables)

    ClipAfterSum.__name__ = ClipAfterSum.__qualname__ = optimizer_class.__name__
    return ClipAfterSum


# === The loop ===


def gathered(strategy, worker):
    """A function that takes a number from every worker at once (a
    collective: every worker calls it at the same point) and returns, on
    every worker, the list of every replica's number (each worker's once
    per replica it holds). With one worker, [number]."""
    if worker.count == 1:
        return lambda value: [float(value)]
    import tensorflow as tf

    @tf.function
    def gather(value):
        def replica(value):
            context = tf.distribute.get_replica_context()
            mine = tf.one_hot(context.replica_id_in_sync_group, context.num_replicas_in_sync, dtype=value.dtype)
            return context.all_reduce(tf.distribute.ReduceOp.SUM, mine * value)

        return strategy.experimental_local_results(strategy.run(replica, args=(value,)))[0]

    return lambda value: [float(v) for v in gather(tf.constant(float(value), tf.float64)).numpy()]


class SharedClock:
    """Seconds since `start()` on the slowest worker's clock, the same number
    on every worker (each `elapsed()` is a collective: every worker calls it
    at the same point), so that a time budget stops every worker after the
    same epoch. With one worker, this process's clock."""

    def __init__(self, gather=None):
        self._gather = gather or (lambda value: [value])
        self.start()

    def start(self):
        self._started = time.monotonic()

    def elapsed(self):
        return max(self._gather(time.monotonic() - self._started))


def _step_function(strategy, model, step, data):
    """A tf.function: one global batch of `data` through `step` (the model's
    train_step or test_step) on every replica, each on its own rows
    (`replica_rows`); returns the step's logs, each read from the metrics
    summed over every replica. Its signature is the dataset's element spec
    (unknown lengths stay unknown), so that batches of new lengths do not
    trace it again."""
    import tensorflow as tf

    def replica_step(batch):
        context = tf.distribute.get_replica_context()
        return step(replica_rows(batch, context.replica_id_in_sync_group, context.num_replicas_in_sync))

    def run(batch):
        outputs = strategy.run(replica_step, args=(batch,))
        exact = model.get_metrics_result()  # cross-replica: the metrics' variables summed over the replicas
        missing = sorted(set(outputs) - set(exact))
        if missing:
            raise ValueError(
                f"{type(model).__name__}'s step logs {missing}, which its get_metrics_result does not give: "
                "under a strategy every logged value is read from the metrics."
            )
        return {key: exact[key] for key in outputs}

    return tf.function(run, input_signature=[data.element_spec])


def fit(model, strategy, worker, train, validation, epochs, initial_epoch, callbacks, class_weight=None, verbose=2):
    """Train `model` (built and compiled in `strategy.scope()`, its backup
    restored) on `train` and validate on `validation` (datasets of global
    batches) from `initial_epoch` to `epochs`, with the Keras `callbacks`,
    as Keras's `fit(shuffle=False)` does on one device."""
    import keras

    train_data = with_class_weights(train, class_weight)
    validation_data = validation
    train_step = _step_function(strategy, model, model.train_step, train_data)
    test_step = _step_function(strategy, model, model.test_step, validation_data)
    gather = gathered(strategy, worker)
    callback_list = keras.callbacks.CallbackList(
        callbacks, add_history=True, add_progbar=verbose != 0, model=model, verbose=verbose, epochs=epochs, steps=None
    )

    def numbers(logs):
        return {key: float(value) for key, value in logs.items()}

    model.stop_training = False
    callback_list.on_train_begin()
    logs = {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        for step, batch in enumerate(train_data):
            callback_list.on_train_batch_begin(step)
            logs = numbers(train_step(batch))
            callback_list.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        epoch_logs = dict(logs)
        model.reset_metrics()
        callback_list.on_test_begin()
        validation_logs = {}
        for step, batch in enumerate(validation_data):
            callback_list.on_test_batch_begin(step)
            validation_logs = numbers(test_step(batch))
            callback_list.on_test_batch_end(step, validation_logs)
        callback_list.on_test_end(validation_logs)
        epoch_logs.update({f"val_{key}": value for key, value in validation_logs.items()})
        callback_list.on_epoch_end(epoch, epoch_logs)
        logs = epoch_logs
        model.stop_training = max(gather(model.stop_training)) > 0  # one worker's stop stops them all
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return logs
