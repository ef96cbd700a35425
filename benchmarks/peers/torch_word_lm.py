"""Peer for the language-model task: PyTorch's `word_language_model` example, with a GRU.

Follows https://github.com/pytorch/examples/tree/main/word_language_model (main.py, model.py,
data.py), rewritten from its description rather than copied:

- data: each line split on whitespace plus "<eos>", ids as one long stream, batchified into
  columns, windows of `bptt` tokens with the targets shifted by one;
- model: embedding -> dropout -> multi-layer nn.GRU -> dropout -> linear decoder, the decoder
  tied to the embedding (`--tied`), uniform +-0.1 init and a zero decoder bias, log-softmax with
  NLLLoss;
- training: hidden state carried across windows and detached, gradients clipped to norm 0.25,
  plain SGD written out by hand (lr 20), validation after each epoch, the best model kept and the
  learning rate divided by 4 whenever validation does not improve; evaluation with batch 10.

The sizes are those of nlptool's shipped PTB config (nlptool/configs/language_model_ptb.yaml)
rather than the example's defaults, so that throughput compares like with like: embedding and
hidden 400 (the example's default is 200), 2 layers, dropout 0.3 (0.2), batch 32 (20), bptt 35.
The example trains for a fixed number of epochs; here a `Deadline` bounds the training instead
(see common.py).

Differences from the example besides the sizes:
- the dictionary is built from the training split only (the example adds the validation and test
  words too; for PTB they are all in the training split, and an unknown word is an error here);
- with `limit`, the dictionary still comes from the whole training split, so the model has the
  real vocabulary size (and the check above stays true);
- the best model is kept in memory rather than saved to a file.

Run it:

    python benchmarks/peers/torch_word_lm.py --seconds 3600 [--seed 1] [--limit N]
"""

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py, when run as a script or imported

import torch
from common import Deadline, command_line, data_dir
from torch import nn

NAME = "PyTorch word_language_model (GRU)"
TASK = "language-model"

CONFIG = {
    "rnn": "GRU",
    "emsize": 400,
    "nhid": 400,
    "nlayers": 2,
    "dropout": 0.3,
    "tied": True,
    "batch_size": 32,
    "eval_batch_size": 10,
    "bptt": 35,
    "lr": 20.0,
    "lr_decay_factor": 4.0,
    "clip": 0.25,
}
EOS = "<eos>"


# --- data -------------------------------------------------------------------------------------------------------


def read_lines(path, limit=None):
    """The file's lines split into words, each ending with the end-of-sentence word."""
    lines = []
    with open(path, encoding="utf-8") as file:
        for line in file:
            if limit is not None and len(lines) >= limit:
                break
            lines.append(line.split() + [EOS])
    return lines


def build_dictionary(lines):
    """Word -> id, in order of first appearance."""
    word_to_id = {}
    for words in lines:
        for word in words:
            word_to_id.setdefault(word, len(word_to_id))
    return word_to_id


def encode(lines, word_to_id, split):
    """All the lines' ids as one 1-D LongTensor; a word outside the dictionary is an error."""
    ids = []
    for number, words in enumerate(lines, 1):
        for word in words:
            if word not in word_to_id:
                raise ValueError(f"PTB {split} line {number}: {word!r} is not in the training vocabulary")
            ids.append(word_to_id[word])
    return torch.tensor(ids, dtype=torch.long)


def load_ptb(limit=None):
    """The dictionary and the train, valid and test id streams (the first `limit` lines of each)."""
    folder = data_dir() / "ptb"
    word_to_id = build_dictionary(read_lines(folder / "ptb.train.txt"))  # always the whole split: see the docstring
    streams = {
        split: encode(read_lines(folder / f"ptb.{split}.txt", limit), word_to_id, split)
        for split in ("train", "valid", "test")
    }
    return word_to_id, streams


def batchify(ids, batch_size):
    """(steps, batch_size): the stream cut into `batch_size` contiguous columns, the remainder dropped."""
    steps = ids.size(0) // batch_size
    return ids[: steps * batch_size].view(batch_size, steps).t().contiguous()


def get_batch(source, start, bptt):
    """Input rows start..start+seq_len and the same rows one step later, flattened, as targets."""
    seq_len = min(bptt, source.size(0) - 1 - start)
    inputs = source[start : start + seq_len]
    targets = source[start + 1 : start + 1 + seq_len].reshape(-1)
    return inputs, targets


# --- model ------------------------------------------------------------------------------------------------------


class RNNModel(nn.Module):
    """Embedding, dropout, GRU, dropout, a decoder tied to the embedding; log-probabilities out."""

    def __init__(self, ntoken, ninp, nhid, nlayers, dropout, tied):
        super().__init__()
        self.nlayers = nlayers
        self.nhid = nhid
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.GRU(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tied:
            if nhid != ninp:
                raise ValueError("tied weights need the hidden size to equal the embedding size")
            self.decoder.weight = self.encoder.weight
        self.init_weights()

    def init_weights(self):
        init_range = 0.1
        nn.init.uniform_(self.encoder.weight, -init_range, init_range)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -init_range, init_range)  # the same tensor as the encoder's when tied

    def forward(self, inputs, hidden):
        embedded = self.drop(self.encoder(inputs))
        output, hidden = self.rnn(embedded, hidden)
        logits = self.decoder(self.drop(output))
        return torch.log_softmax(logits.view(-1, logits.size(-1)), dim=1), hidden

    def init_hidden(self, batch_size):
        return self.encoder.weight.new_zeros(self.nlayers, batch_size, self.nhid)


# --- training and evaluation ------------------------------------------------------------------------------------


def evaluate(model, source, bptt, batch_size):
    """Mean loss per target token over the whole stream, hidden state carried across windows."""
    model.eval()
    criterion = nn.NLLLoss()
    total_loss = 0.0
    hidden = model.init_hidden(batch_size)
    with torch.no_grad():
        for start in range(0, source.size(0) - 1, bptt):
            inputs, targets = get_batch(source, start, bptt)
            output, hidden = model(inputs, hidden)
            total_loss += len(inputs) * criterion(output, targets).item()  # weight each window by its length
    return total_loss / (source.size(0) - 1)


class Trainer:
    """The example's training loop, one epoch at a time, stopping at the deadline."""

    def __init__(self, model, train_data, deadline):
        self.model = model
        self.train_data = train_data
        self.deadline = deadline
        self.criterion = nn.NLLLoss()
        self.lr = CONFIG["lr"]
        self.steps_per_epoch = len(range(0, train_data.size(0) - 1, CONFIG["bptt"]))
        self.steps = 0
        self.tokens = 0

    def train_epoch(self):
        """One pass over the training stream; False when the deadline stopped it part way."""
        self.model.train()
        hidden = self.model.init_hidden(CONFIG["batch_size"])
        for start in range(0, self.train_data.size(0) - 1, CONFIG["bptt"]):
            inputs, targets = get_batch(self.train_data, start, CONFIG["bptt"])
            hidden = hidden.detach()  # truncated backpropagation: no gradient into earlier windows
            self.model.zero_grad()
            output, hidden = self.model(inputs, hidden)
            self.criterion(output, targets).backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), CONFIG["clip"])
            with torch.no_grad():
                for parameter in self.model.parameters():
                    parameter.add_(parameter.grad, alpha=-self.lr)
            self.steps += 1
            self.tokens += targets.numel()
            if self.deadline.passed():
                return False
        return True


def copy_state(model):
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def run(seconds, seed, limit=None):
    torch.manual_seed(seed)
    word_to_id, streams = load_ptb(limit)
    train_data = batchify(streams["train"], CONFIG["batch_size"])
    val_data = batchify(streams["valid"], CONFIG["eval_batch_size"])
    test_data = batchify(streams["test"], CONFIG["eval_batch_size"])
    model = RNNModel(
        len(word_to_id), CONFIG["emsize"], CONFIG["nhid"], CONFIG["nlayers"], CONFIG["dropout"], CONFIG["tied"]
    )

    deadline = Deadline(seconds)
    trainer = Trainer(model, train_data, deadline)
    best_val_loss, best_state = math.inf, None
    epoch = 0
    while not deadline.passed():  # also stops after an epoch's validation that ran past the deadline
        epoch += 1
        if not trainer.train_epoch():
            break
        val_loss = evaluate(model, val_data, CONFIG["bptt"], CONFIG["eval_batch_size"])
        print(
            f"epoch {epoch}: valid ppl {math.exp(val_loss):.2f} lr {trainer.lr:g} at {deadline.elapsed():.0f}s",
            file=sys.stderr,
        )
        if val_loss < best_val_loss:
            best_val_loss, best_state = val_loss, copy_state(model)
        else:
            trainer.lr /= CONFIG["lr_decay_factor"]
    train_seconds = deadline.elapsed()

    # Keep the weights of the best validation loss, the final weights included: the example only validates at the
    # end of an epoch, so the weights the deadline stopped on are measured once more here, untimed.
    final_val_loss = evaluate(model, val_data, CONFIG["bptt"], CONFIG["eval_batch_size"])
    if best_state is not None and best_val_loss < final_val_loss:
        model.load_state_dict(best_state)
    else:
        best_val_loss = final_val_loss
    model.rnn.flatten_parameters()
    test_loss = evaluate(model, test_data, CONFIG["bptt"], CONFIG["eval_batch_size"])

    return {
        "train_seconds": train_seconds,
        "epochs": trainer.steps / trainer.steps_per_epoch,  # full epochs plus the share of the last one
        "train_units": trainer.tokens,
        "quality": {"test_perplexity": math.exp(test_loss), "validation_perplexity": math.exp(best_val_loss)},
        "config": {**CONFIG, "vocab_size": len(word_to_id), "seed": seed, "limit": limit},
    }


if __name__ == "__main__":
    command_line(run, __doc__.splitlines()[0])
