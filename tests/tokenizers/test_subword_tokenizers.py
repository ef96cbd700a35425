"""SentencePiece and WordPiece tokenisers: training, round trips, the id
contract, configs and string-in SavedModels served without nlptool."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import base64
import doctest
import json
import subprocess
import sys
import unicodedata

import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import in_fresh_process

import nlptool.tokenizers
from nlptool.tokenizers import END_ID, PAD_ID, START_ID, UNK_ID
from nlptool.tokenizers import sentencepiece as sentencepiece_module
from nlptool.tokenizers import wordpiece as wordpiece_module
from nlptool.tokenizers.sentencepiece import SentencePieceTokenizer
from nlptool.tokenizers.wordpiece import WordPieceTokenizer

# All samples are already NFKC-normalised with single spaces: SentencePiece's
# default "nmt_nfkc" normalisation would otherwise change them (NFKC, and
# leading/trailing/repeated whitespace removed), and the round trip could not
# be exact. The combining-mark samples use sequences with no precomposed form.
SAMPLES = {
    "english": "The quick brown fox jumps over the lazy dog.",
    "german": "Grüße aus Köln, die Straße ist schön.",
    "spanish": "¿Dónde está el niño? Mañana vamos a la montaña.",
    "vietnamese": "Tiếng Việt có nhiều dấu thanh điệu.",
    "chinese": "我们喜欢学习中文和自然语言处理。",
    "arabic": "مرحبا بالعالم، كيف حالك اليوم؟",
    "emoji": "I love pizza 🍕 and cats 😺🎉👍🏽",
    "combining": "q\u0307 x\u0323\u0302 नमस्ते दुनिया",
}
CORPUS = [
    *SAMPLES.values(),
    "The dog sleeps and the fox runs over the hill.",
    "Die Straße in Köln ist lang und schön.",
    "El niño come pan por la mañana.",
    "Tôi thích học tiếng Việt.",
    "自然语言处理很有趣。",
    "العالم كبير والناس طيبون.",
    "Emoji 🍕😺🎉👍🏽 are fun.",
] * 10


def test_samples_are_nfkc():
    for text in SAMPLES.values():
        assert unicodedata.normalize("NFKC", text) == text


def decode(tensor):
    return [t.decode("utf-8") for t in tensor.numpy().tolist()]


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def sp(request):
    return SentencePieceTokenizer(
        vocab_size=200, model_type=request.param, character_coverage=1.0, user_defined_symbols=["[MASK]"], seed=7
    ).train(CORPUS)


@pytest.fixture(scope="module")
def wp():
    return WordPieceTokenizer(vocab_size=300).train(CORPUS)


# --- SentencePiece ---


def test_sentencepiece_reserved_ids_and_vocabulary(sp):
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_proto=sp.model_proto)
    assert [processor.id_to_piece(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert processor.id_to_piece(4) == "[MASK]"
    assert 4 < sp.vocabulary_size() <= 200
    assert sp.vocabulary_size() == processor.get_piece_size()


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sentencepiece_round_trip(sp, name):
    text = SAMPLES[name]
    ids = sp([text])
    assert ids.dtype == tf.int32
    row = ids.numpy()[0]
    assert (row >= 4).all() and (row < sp.vocabulary_size()).all()  # no reserved ids, no <unk>
    assert decode(sp.detokenize(ids)) == [text]


def test_sentencepiece_empty_and_batch(sp):
    ids = sp(["", SAMPLES["english"], ""])
    assert (ids.numpy()[0] == PAD_ID).all() and (ids.numpy()[2] == PAD_ID).all()
    assert decode(sp.detokenize(ids)) == ["", SAMPLES["english"], ""]


@pytest.mark.parametrize("shards", [1, 2, 3])
def test_sentencepiece_gives_the_librarys_ids_whatever_the_batch_and_its_parts(sp, shards, monkeypatch):
    import sentencepiece as spm

    monkeypatch.setattr(sentencepiece_module, "SHARDS", shards)
    processor = spm.SentencePieceProcessor(model_proto=sp.model_proto)
    tokenize = tf.function(sp.tokenize, input_signature=[tf.TensorSpec([None], tf.string)])  # traced with `shards`
    texts = [*SAMPLES.values(), "  spaces   around  ", "", "[MASK] and ½ ﬁ"]
    for size in (0, 1, 2, len(texts)):  # fewer texts than parts leaves parts empty
        batch = texts[:size]
        assert tokenize(tf.constant(batch, tf.string)).to_list() == processor.encode(batch), (size, batch)


def test_sentencepiece_one_megabyte_string(sp):
    unit = " ".join(SAMPLES.values()) + " "
    text = (unit * (1_000_000 // len(unit.encode("utf-8")) + 1)).strip()
    assert len(text.encode("utf-8")) >= 1_000_000
    ids = sp.tokenize(tf.constant([text]))
    assert ids.row_lengths().numpy()[0] > 10_000
    assert decode(sp.ids_to_text(ids)) == [text]


def test_sentencepiece_special_strings_are_not_reserved_pieces(sp):
    ids = sp(["a <s> b </s> <pad> <unk>"]).numpy()[0]
    assert not np.isin(ids, [PAD_ID, START_ID, END_ID]).any()


def test_sentencepiece_user_defined_symbol_is_one_piece(sp):
    ids = sp.tokenize(tf.constant(["the [MASK] runs", "[MASK][MASK]"]))
    assert list(ids.numpy()[0]).count(4) == 1
    assert list(ids.numpy()[1]).count(4) == 2
    assert decode(sp.ids_to_text(ids)) == ["the [MASK] runs", "[MASK][MASK]"]


def test_sentencepiece_sequence_length_and_start_end(sp):
    config = sp.get_config() | {"sequence_length": 6, "add_start": True, "add_end": True}
    tokenizer = SentencePieceTokenizer.from_config(config)
    ids = tokenizer([SAMPLES["english"], "a"]).numpy()
    assert ids.shape == (2, 6)
    plain = sp.tokenize(tf.constant([SAMPLES["english"], "a"]))
    long_row, short_row = plain[0].numpy(), plain[1].numpy()
    assert ids[0].tolist() == [START_ID, *long_row[:4], END_ID]  # truncation keeps the first tokens
    assert ids[1].tolist() == [START_ID, *short_row, END_ID] + [PAD_ID] * (6 - 2 - len(short_row))
    # padding to the longest row without sequence_length
    free = SentencePieceTokenizer.from_config(sp.get_config() | {"add_start": True})
    ids = free([SAMPLES["english"], "a"]).numpy()
    assert ids.shape == (2, 1 + len(long_row))
    assert ids[:, 0].tolist() == [START_ID, START_ID]
    assert ids[1, 1 + len(short_row) :].tolist() == [PAD_ID] * (len(long_row) - len(short_row))
    assert decode(free.detokenize(ids)) == [SAMPLES["english"], "a"]


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_sentencepiece_same_seed_same_model(model_type):
    def train():
        return SentencePieceTokenizer(vocab_size=120, model_type=model_type, character_coverage=1.0, seed=3).train(
            CORPUS
        )

    assert train().model_proto == train().model_proto


def test_sentencepiece_small_corpus_and_bad_arguments():
    # the corpus cannot fill 5000 pieces: a smaller model, not a crash
    tokenizer = SentencePieceTokenizer(vocab_size=5000, character_coverage=1.0).train(["a tiny corpus"] * 3)
    assert 4 < tokenizer.vocabulary_size() < 5000
    assert decode(tokenizer.detokenize(tokenizer(["a tiny corpus"]))) == ["a tiny corpus"]
    # fewer pieces than characters to cover: a clear error naming the argument
    with pytest.raises(ValueError, match="vocab_size"):
        SentencePieceTokenizer(vocab_size=10, character_coverage=1.0).train(CORPUS)
    with pytest.raises(ValueError, match="model_type"):
        SentencePieceTokenizer(model_type="word")
    with pytest.raises(ValueError, match="character_coverage"):
        SentencePieceTokenizer(character_coverage=0)
    with pytest.raises(ValueError, match="no model yet"):
        SentencePieceTokenizer().tokenize(tf.constant(["x"]))


def test_sentencepiece_trains_from_dataset_and_logs_progress(caplog, monkeypatch):
    monkeypatch.setattr(sentencepiece_module, "LOG_EVERY", 20)
    dataset = tf.data.Dataset.from_tensor_slices(CORPUS).batch(7)
    with caplog.at_level("INFO", logger=sentencepiece_module.__name__):
        from_dataset = SentencePieceTokenizer(vocab_size=120, character_coverage=1.0).train(dataset)
    messages = [r.getMessage() for r in caplog.records if r.name == sentencepiece_module.__name__]
    assert any("read 60 sentences" in m for m in messages)
    from_list = SentencePieceTokenizer(vocab_size=120, character_coverage=1.0).train(CORPUS)
    assert from_dataset.model_proto == from_list.model_proto


def test_sentencepiece_config_round_trip(sp):
    config = sp.get_config()
    json.dumps(config)  # configs must be JSON
    assert base64.b64decode(config["model_proto"]) == sp.model_proto
    rebuilt = SentencePieceTokenizer.from_config(config)
    strings = list(SAMPLES.values())
    np.testing.assert_array_equal(rebuilt(strings).numpy(), sp(strings).numpy())
    assert rebuilt.get_config() == config
    # raw bytes are accepted too
    from_bytes = SentencePieceTokenizer(model_proto=sp.model_proto)
    np.testing.assert_array_equal(from_bytes(strings).numpy(), sp(strings).numpy())
    with pytest.raises(ValueError, match="model_proto"):
        SentencePieceTokenizer(model_proto="not base64!")


# --- WordPiece ---


def test_wordpiece_learnt_vocabulary():
    corpus = ["The cat sat on the mat.", "The cats sat!", "Un café très chaud."] * 5
    tokenizer = WordPieceTokenizer(vocab_size=60).train(corpus)
    vocab = tokenizer.vocabulary
    assert not set(vocab) & {"<pad>", "<unk>", "<s>", "</s>"}  # reserved ids 0-3 are implicit
    assert {"the", "cat", "sat", "."} <= set(vocab)
    chars = set("thecasonmuftrsd.!")
    assert chars <= set(vocab) and {"##" + c for c in chars} <= set(vocab)
    assert "é" not in "".join(vocab) and "T" not in "".join(vocab)  # normalised: lowercased, accents stripped
    assert tokenizer.vocabulary_size() == 4 + len(vocab)
    ids = tokenizer.tokenize(tf.constant(["the cat"])).numpy()[0].tolist()
    assert ids == [4 + vocab.index("the"), 4 + vocab.index("cat")]
    # a word made of seen characters only is always tokenisable, into pieces
    ids = tokenizer.tokenize(tf.constant(["tacos"])).numpy()[0]
    assert len(ids) > 1 and UNK_ID not in ids
    assert vocab[ids[1] - 4].startswith("##")


def test_wordpiece_round_trip_gives_normalised_text(wp):
    strings = [SAMPLES["german"], SAMPLES["spanish"], "The DOG runs.", ""]
    ids = wp(strings)
    assert UNK_ID not in ids.numpy()
    assert decode(wp.detokenize(ids)) == [
        "gruße aus koln , die straße ist schon .",
        "¿ donde esta el nino ? manana vamos a la montana .",
        "the dog runs .",
        "",
    ]


def test_wordpiece_unknown_characters(wp):
    ids = wp(["the ☃ dog", "ドッグ"]).numpy()
    assert ids[0, 1] == UNK_ID and ids[0, 0] != UNK_ID and ids[0, 2] != UNK_ID
    assert ids[1].tolist() == [UNK_ID] + [PAD_ID] * (ids.shape[1] - 1)
    assert decode(wp.detokenize(ids)) == ["the <unk> dog", "<unk>"]


def test_wordpiece_options_and_errors():
    keep = WordPieceTokenizer(vocab_size=80, lowercase=False, strip_accents=False).train(["Café Olé"] * 3)
    assert decode(keep.detokenize(keep(["Café Olé"]))) == ["Café Olé"]
    with pytest.raises(ValueError, match="vocab_size"):
        WordPieceTokenizer(vocab_size=2)
    with pytest.raises(ValueError, match="reserved"):
        WordPieceTokenizer(vocabulary=["a", "<unk>"])
    with pytest.raises(ValueError, match="no vocabulary yet"):
        WordPieceTokenizer().tokenize(tf.constant(["x"]))


def test_wordpiece_sequence_length_and_config_round_trip(wp):
    config = wp.get_config() | {"sequence_length": 4, "add_start": True, "add_end": True}
    json.dumps(config)
    tokenizer = WordPieceTokenizer.from_config(config)
    assert tokenizer.get_config() == config
    ids = tokenizer(["the dog sleeps and the fox runs", "dog"]).numpy()
    plain = wp.tokenize(tf.constant(["the dog sleeps and the fox runs", "dog"]))
    assert ids[0].tolist() == [START_ID, *plain[0].numpy()[:2], END_ID]
    assert ids[1].tolist() == [START_ID, *plain[1].numpy(), END_ID] + [PAD_ID] * (2 - len(plain[1]))
    rebuilt = WordPieceTokenizer.from_config(wp.get_config())
    strings = list(SAMPLES.values())
    np.testing.assert_array_equal(rebuilt(strings).numpy(), wp(strings).numpy())


# --- packaging ---


def test_lazy_imports():
    code = (
        "import sys, nlptool.tokenizers as t; assert 'tensorflow_text' not in sys.modules; "
        "assert t.WordPieceTokenizer.__name__ == 'WordPieceTokenizer'; "
        "assert t.SentencePieceTokenizer.__name__ == 'SentencePieceTokenizer'; "
        "assert 'tensorflow_text' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert nlptool.tokenizers.WordPieceTokenizer is WordPieceTokenizer
    assert "SentencePieceTokenizer" in nlptool.tokenizers.__all__


def test_docstring_examples():
    for module in (sentencepiece_module, wordpiece_module):
        result = doctest.testmod(module, raise_on_error=False)
        assert result.attempted > 0 and result.failed == 0


def test_keras_file_and_savedmodel_without_nlptool(sp, wp, tmp_path):
    strings = list(SAMPLES.values()) + ["", "the ☃ dog"]
    expected = {}
    for name, tokenizer in (("sp", sp), ("wp", wp)):
        config = tokenizer.get_config() | {"add_start": True, "add_end": True}
        layer = type(tokenizer).from_config(config)
        inputs = keras.Input(shape=(1,), dtype="string")
        model = keras.Model(inputs, layer(inputs))
        batch = tf.constant([[s] for s in strings])
        expected[name] = model(batch).numpy()
        assert (expected[name][:, 0] == START_ID).all()
        # .keras files carry the vocabulary / model proto
        model.save(tmp_path / f"{name}.keras")
        reloaded = keras.saving.load_model(tmp_path / f"{name}.keras")
        np.testing.assert_array_equal(reloaded(batch).numpy(), expected[name])
        model.export(str(tmp_path / name), format="tf_saved_model", verbose=False)

    served = in_fresh_process(
        f"""
        import json
        import tensorflow as tf
        out = {{}}
        for name in ("sp", "wp"):
            model = tf.saved_model.load({str(tmp_path)!r} + "/" + name)
            batch = tf.constant([[s] for s in {strings!r}])
            out[name] = model.serve(batch).numpy().tolist()
        print(json.dumps(out))
        """,
        tensorflow_text=True,  # registers the ops, as a serving binary does
    )
    for name in ("sp", "wp"):
        np.testing.assert_array_equal(np.array(served[name]), expected[name])


def test_two_sentencepiece_models_in_one_saved_model_keep_their_own_vocabularies(tmp_path):
    # tf-text's model resource is named after its graph node; with the default
    # name, both tokenisers of a loaded SavedModel used the first model
    german = SentencePieceTokenizer(vocab_size=40, character_coverage=1.0).train(["der hund läuft nach hause"] * 20)
    english = SentencePieceTokenizer(vocab_size=40, character_coverage=1.0).train(["the cat sleeps on the sofa"] * 20)

    class Both(tf.Module):
        def __init__(self):
            super().__init__()
            self.german, self.english = german, english

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def encode(self, text):
            return {"german": self.german(text), "english": self.english(text)}

    text = tf.constant(["the cat sleeps at home"])
    module = Both()  # kept alive: tf.function methods hold their instance weakly
    expected = module.encode(text)
    assert expected["german"].numpy().tolist() != expected["english"].numpy().tolist()
    tf.saved_model.save(module, str(tmp_path / "both"))
    loaded = tf.saved_model.load(str(tmp_path / "both")).encode(text)
    for side in ("german", "english"):
        np.testing.assert_array_equal(loaded[side].numpy(), expected[side].numpy())
