"""The models behind the tasks: a GRU classifier, a GRU language model and
the attention encoder-decoder, each with the serving module of its export."""
