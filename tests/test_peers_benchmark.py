"""benchmarks/peers.py and the peer implementations in benchmarks/peers/:
the table's ratios and verdicts, the contract every peer module keeps, the
translation peers' batching; and (slow) each peer trained to a deadline on
a few examples of the real data."""

import importlib.util
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCHMARKS_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
PEERS_DIR = BENCHMARKS_DIR / "peers"
sys.path.insert(0, str(BENCHMARKS_DIR))
sys.path.insert(0, str(PEERS_DIR))
import common  # noqa: E402
import multi30k  # noqa: E402


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


peers = load(BENCHMARKS_DIR / "peers.py", "_benchmark_peers")


def result_of(seconds, units, quality, epochs=1):
    return {"train_seconds": seconds, "train_units": units, "epochs": epochs, "quality": quality, "peak_rss_mib": 900}


def rows_of(table):
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("| ")]


def test_the_table_gives_nlptool_over_peer_and_judges_quality_in_the_right_direction():
    results = {
        "machine": {"cpus": 2},
        "rows": [
            {
                "task": "language-model",
                "date": "2026-12-07T18:00:00+00:00",
                "nlptool": result_of(100.0, 300_000, {"test_perplexity": 150.0}),
                "peers": {"torch_word_lm": result_of(100.0, 200_000, {"test_perplexity": 160.0}, epochs=0.5)},
            },
            {
                "task": "sentiment",
                "date": "2026-12-07T18:00:00+00:00",
                "nlptool": result_of(60.0, 6_000, {"accuracy": 0.85}),
                "peers": {"keras_imdb": result_of(60.0, 12_000, {"accuracy": 0.87})},
            },
        ],
    }
    body = rows_of(peers.table(results))[1:]  # under the header
    assert [row[:2] for row in body] == [
        ["language-model", "nlptool"],
        ["language-model", "PyTorch word_language_model (GRU)"],
        ["sentiment", "nlptool"],
        ["sentiment", "Keras bidirectional RNN example (GRU)"],
    ]
    lm_peer, sentiment_peer = body[1], body[3]
    assert lm_peer[4] == "2,000 tokens/s" and lm_peer[5] == "1.50x"
    assert lm_peer[7].startswith("at least")  # a lower perplexity is better
    assert sentiment_peer[5] == "0.50x"
    assert sentiment_peer[7].startswith("below")  # a lower accuracy is worse


def test_every_peer_module_keeps_the_contract():
    names = peers.peer_names()
    listed = {module for _, _, modules in peers.TASKS.values() for module in modules}
    assert listed == set(names)  # every module in the table has a NAME, and every peer is run
    for task, (_, _, modules) in peers.TASKS.items():
        for module in modules:
            text = (PEERS_DIR / f"{module}.py").read_text()
            assert f'TASK = "{task}"' in text
            assert re.search(r"^def run\(seconds, seed, limit=None\):", text, re.M), module


def test_length_buckets_hold_every_pair_once_in_batches_of_similar_length():
    pairs = [([1] * (1 + i % 37), [2, 5, 3]) for i in range(1000)]
    batches = multi30k.length_buckets(pairs, batch_size=16, seed=3, pool=10)
    assert sorted(len(s) for batch in batches for s, _ in batch) == sorted(len(s) for s, _ in pairs)
    assert all(1 <= len(batch) <= 16 for batch in batches)
    spread = [max(len(s) for s, _ in b) - min(len(s) for s, _ in b) for b in batches]
    # sorted within pools of 160 pairs over 37 lengths: a batch of 16 spans about 4 lengths (shuffled: about 30)
    assert sorted(spread)[len(spread) // 2] <= 4
    assert batches == multi30k.length_buckets(pairs, batch_size=16, seed=3, pool=10)
    assert batches != multi30k.length_buckets(pairs, batch_size=16, seed=4, pool=10)


def test_the_decoded_output_stops_at_the_first_end_and_drops_special_ids():
    class Pieces:
        def decode(self, ids):
            return " ".join(map(str, ids))

    corpus = multi30k.Corpus.__new__(multi30k.Corpus)
    corpus.target_pieces = Pieces()
    assert corpus.decode([7, multi30k.PAD, 9, multi30k.END, 11]) == "7 9"
    assert multi30k.max_output_length(10) == 25


def test_the_deadline_passes_after_its_seconds():
    deadline = common.Deadline(0.2)
    assert not deadline.passed()
    time.sleep(0.25)
    assert deadline.passed() and deadline.elapsed() >= 0.2


@pytest.mark.slow
@pytest.mark.parametrize("module", ["keras_nmt", "torch_seq2seq", "torch_word_lm", "keras_imdb"])
def test_a_peer_trains_to_its_deadline_and_reports_by_the_contract(module):
    if module.startswith("torch"):
        pytest.importorskip("torch")
    seconds = 15
    done = subprocess.run(
        [sys.executable, PEERS_DIR / f"{module}.py", "--seconds", str(seconds), "--limit", "300"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert seconds <= result["train_seconds"] < seconds + 20  # stops at the first step (or validation) past it
    assert result["train_units"] > 0 and result["epochs"] > 0
    assert result["peak_rss_mib"] > 100
    assert result["quality"]
