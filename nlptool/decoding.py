"""In-graph text generation: sampling and beam search with core TensorFlow ops.

Everything here traces inside a `tf.function` with an unknown batch size and
exports in a SavedModel that runs on stock TensorFlow: the decoding loops are
`tf.while_loop`s, random draws are stateless, and no custom op is used.

The step-function contract
--------------------------
A model is driven through one function

    step_fn(tokens, state) -> (logits, new_state)

    tokens     int32 [N], the previous token of each of the N rows
    state      any tf.nest structure of tensors whose first dimension is N
    logits     float [N, V], unnormalised scores of the next token
    new_state  the same structure, shapes and dtypes as `state`

The first call receives `start_tokens`, and every later call the tokens chosen
at the step before. For a language model continuing a prompt, `state` is the
recurrent state after all prompt tokens but the last, and `start_tokens` is the
last prompt token (or <s> for an empty prompt). Rows that have finished are
fed the pad id (0); their logits are ignored. Any Keras layer called in
`step_fn` must already be built (variables cannot be created inside the loop).

Sampling (`sample`, `greedy`)
-----------------------------
At step t each row draws y_t from softmax(filter(z_t / T)), where z_t are the
logits, T the temperature and `filter` keeps the top-k tokens and then the
nucleus (top-p) of what remains (see `filter_logits`). T <= 0 or greedy=True
takes argmax z_t instead. Draws use the Gumbel-max trick,
    y_t = argmax_v (z'_v + g_v),  g_v = -log(-log(u_v)),  u_v ~ U(0, 1),
with u drawn by `tf.random.stateless_uniform` under the seed pair (seed, t), so
a given seed gives the same tokens eagerly, in a tf.function and after export.

Beam search (`beam_search`)
---------------------------
Each sentence keeps W hypotheses (beams). A hypothesis Y = y_1..y_n has the
log-probability log P(Y) = sum_i log softmax(z_i)[y_i] and the GNMT score
(Wu et al. 2016)
    score(Y) = log P(Y) / lp(Y),   lp(Y) = ((5 + |Y|) / 6) ** alpha,
where |Y| counts the generated tokens including the end token and alpha is
`length_penalty` (alpha = 0 gives plain log-probability). At every step each
live beam proposes all V continuations, each finished beam proposes only itself
(extended by pad at zero cost, so its log P and |Y| stay put), and the W best
proposals by score survive. The loop ends at the length limit or once every
beam of every sentence has finished.
"""

import numbers

import numpy as np
import tensorflow as tf

from nlptool.tokenizers.base import END_ID, PAD_ID

__all__ = ["beam_search", "filter_logits", "greedy", "sample", "tile_beams"]

_NEG_INF = float("-inf")
_TINY = float(np.finfo(np.float32).tiny)  # smallest uniform draw, so log(u) is finite


def checked(allowed, **values):
    """The scalar tensors `values` (name -> tensor), each after an in-graph
    check that it lies in `allowed[name]` (a `nlptool.tasks.base.Range`; NaN
    lies in none): a call with a value outside fails with an
    InvalidArgumentError naming the option, instead of decoding nonsense.
    Returns the values in the order given."""
    out = []
    for name, value in values.items():
        bound = allowed[name]
        value = tf.convert_to_tensor(value)
        low = tf.cast(bound.low, value.dtype)
        ok = value > low if bound.low_open else value >= low
        if bound.high is not None:
            high = tf.cast(bound.high, value.dtype)
            ok = tf.logical_and(ok, value < high if bound.high_open else value <= high)
        check = tf.debugging.Assert(ok, [f"{name} must be {bound}, got", value])
        with tf.control_dependencies([check]):
            out.append(tf.identity(value))
    return out


def _is_number(value):
    """Whether `value` is a Python (or NumPy) number rather than a tensor."""
    return isinstance(value, numbers.Number)


def _any_rows(tensor):
    """Loop shape invariant: `tensor`'s shape with its first (row) dimension free."""
    shape = tensor.shape
    if shape.rank is None or shape.rank == 0:
        return shape
    return tf.TensorShape([None]).concatenate(shape[1:])


def _call_step(step_fn, tokens, state):
    """Call `step_fn`; return float32 logits and the new state packed like `state`
    (so a step returning a list for a tuple state still fits the loop)."""
    logits, new_state = step_fn(tokens, state)
    new_state = tf.nest.pack_sequence_as(state, tf.nest.flatten(new_state))
    return tf.cast(logits, tf.float32), new_state


def tile_beams(tensor, beam_width):
    """Repeat every row of `tensor` (or of each tensor in a nested structure)
    `beam_width` times consecutively: [B, ...] -> [B * W, ...].

    Row b of the input becomes rows b*W, ..., b*W + W - 1, the layout in which
    `beam_search` keeps the W hypotheses of sentence b. `beam_search` tiles the
    state it is given; a step function that closes over per-sentence tensors
    (encoder outputs, source masks, ...) must tile those itself with this.
    """
    return tf.nest.map_structure(lambda t: tf.repeat(t, beam_width, axis=0), tensor)


def filter_logits(logits, top_k=0, top_p=1.0):
    """Top-k and nucleus (top-p) filtering of logits [N, V]: removed entries become -inf.

    With the logits of a row sorted in descending order, z_(1) >= ... >= z_(V):

    * top-k keeps the tokens with z >= z_(k). `top_k <= 0` or `top_k >= V`
      keeps all.
    * top-p then takes p = softmax over the tokens kept so far, in the same
      order, and keeps the smallest prefix whose mass reaches `top_p`: token
      (i) stays iff p_(1) + ... + p_(i-1) < top_p. `top_p >= 1` keeps all.

    The most probable token is always kept, and ties at a threshold are all
    kept. `top_k` and `top_p` may be Python numbers or scalar tensors (a
    runtime k works: the row is sorted once and thresholded).
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    use_top_k = not (_is_number(top_k) and top_k <= 0)
    use_top_p = not (_is_number(top_p) and top_p >= 1)
    if not (use_top_k or use_top_p):
        return logits

    vocab = tf.shape(logits)[-1]
    ranked = tf.sort(logits, axis=-1, direction="DESCENDING")
    threshold = tf.fill(tf.shape(logits[:, :1]), _NEG_INF)  # [N, 1]: keep logits >= threshold
    if use_top_k:
        k = tf.cast(top_k, tf.int32)
        k = tf.where((k <= 0) | (k >= vocab), vocab, k)
        threshold = tf.gather(ranked, k - 1, axis=1)[:, None]  # the k-th largest logit
        ranked = tf.where(ranked >= threshold, ranked, _NEG_INF)
    if use_top_p:
        p = tf.cast(top_p, tf.float32)
        mass_before = tf.cumsum(tf.nn.softmax(ranked, axis=-1), axis=-1, exclusive=True)
        nucleus_size = tf.maximum(tf.reduce_sum(tf.cast(mass_before < p, tf.int32), axis=-1), 1)
        smallest_kept = tf.gather(ranked, nucleus_size[:, None] - 1, batch_dims=1)  # [N, 1]
        threshold = tf.maximum(threshold, tf.where(p >= 1, _NEG_INF, smallest_kept))
    return tf.where(logits >= threshold, logits, _NEG_INF)


def _choose_tokens(logits, step, *, temperature, top_k, top_p, seed, greedy):
    """The next token of every row, int32 [N]: argmax, or a Gumbel-max draw seeded by (seed, step)."""
    best = tf.argmax(logits, axis=-1, output_type=tf.int32)
    if greedy is True or (_is_number(temperature) and temperature <= 0):
        return best
    temperature = tf.cast(temperature, tf.float32)
    scaled = logits / tf.where(temperature > 0, temperature, 1.0)
    filtered = filter_logits(scaled, top_k=top_k, top_p=top_p)
    step_seed = tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)])
    uniform = tf.random.stateless_uniform(tf.shape(filtered), seed=step_seed, minval=_TINY, maxval=1.0)
    gumbel = -tf.math.log(-tf.math.log(uniform))
    drawn = tf.argmax(filtered + gumbel, axis=-1, output_type=tf.int32)
    use_best = temperature <= 0
    if greedy is not False:  # a boolean tensor
        use_best = use_best | tf.cast(greedy, tf.bool)
    return tf.where(use_best, best, drawn)


def sample(
    step_fn,
    state,
    start_tokens,
    max_new_tokens,
    *,
    temperature=1.0,
    top_k=0,
    top_p=1.0,
    seed=0,
    end_id=END_ID,
    greedy=False,
):
    """Generate up to `max_new_tokens` tokens per row by sampling (or argmax).

    At step t = 0, 1, ... every unfinished row draws
        y_t ~ softmax(filter_logits(z_t / temperature, top_k, top_p)),
    where z_t are the logits `step_fn` returns for the previous token (the
    start token at t = 0). `greedy=True` or `temperature <= 0` takes
    y_t = argmax z_t. Draws are Gumbel-max with `tf.random.stateless_uniform`
    under the seed pair (seed, t): the same seed and inputs give the same
    tokens in eager mode, in a tf.function and in an exported SavedModel.

    Args:
        step_fn: `(tokens [N], state) -> (logits [N, V], new_state)`; see the module docstring.
        state: the initial state for the B rows (any tf.nest structure of tensors).
        start_tokens: int32 [B], the first input token of every row.
        max_new_tokens: number of tokens to generate (Python int or scalar tensor).
        temperature: divides the logits; <= 0 means argmax. Number or scalar tensor.
        top_k: keep only the k most probable tokens; <= 0 or >= V disables. Number or scalar tensor.
        top_p: keep the smallest set of most probable tokens whose probability reaches p (after top-k);
            >= 1 disables. Number or scalar tensor.
        seed: integer seed (Python int or integer scalar tensor).
        end_id: a row that emits this token is finished: the token is kept, later positions are pad (0).
            None or -1 never stops.
        greedy: always take the argmax (Python bool or boolean scalar tensor).

    Returns:
        tokens: int32 [B, max_new_tokens], right-padded with 0.
        lengths: int32 [B], tokens generated per row including the end token.

    The loop stops early once every row has finished; the output keeps its
    max_new_tokens columns.
    """
    start_tokens = tf.cast(start_tokens, tf.int32)
    state = tf.nest.map_structure(tf.convert_to_tensor, state)
    batch = tf.shape(start_tokens)[0]
    steps = max_new_tokens if isinstance(max_new_tokens, int) else tf.cast(max_new_tokens, tf.int32)
    end_id = -1 if end_id is None else end_id

    def keep_going(t, tokens, state, output, lengths, finished):
        return (t < steps) & tf.logical_not(tf.reduce_all(finished))

    def step(t, tokens, state, output, lengths, finished):
        logits, state = _call_step(step_fn, tokens, state)
        chosen = _choose_tokens(logits, t, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, greedy=greedy)
        chosen = tf.where(finished, PAD_ID, chosen)
        lengths += tf.cast(tf.logical_not(finished), tf.int32)
        finished |= tf.equal(chosen, end_id)
        output = tf.tensor_scatter_nd_update(output, [[t]], chosen[None])
        return t + 1, chosen, state, output, lengths, finished

    output = tf.zeros(tf.stack([steps, batch]), tf.int32)  # [T, B]: row t holds step t
    loop_vars = (
        tf.constant(0),
        start_tokens,
        state,
        output,
        tf.zeros([batch], tf.int32),
        tf.zeros([batch], tf.bool),
    )
    invariants = (
        tf.TensorShape([]),
        tf.TensorShape([None]),
        tf.nest.map_structure(_any_rows, state),
        tf.TensorShape([output.shape[0], None]),
        tf.TensorShape([None]),
        tf.TensorShape([None]),
    )
    _, _, _, output, lengths, _ = tf.while_loop(keep_going, step, loop_vars, shape_invariants=invariants)
    return tf.transpose(output), lengths


def greedy(step_fn, state, start_tokens, max_new_tokens, *, end_id=END_ID):
    """Greedy decoding, y_t = argmax z_t: `sample(..., greedy=True)`."""
    return sample(step_fn, state, start_tokens, max_new_tokens, end_id=end_id, greedy=True)


def beam_search(
    step_fn,
    state,
    start_tokens,
    beam_width,
    max_length,
    *,
    end_id=END_ID,
    length_penalty=0.0,
    n_best=1,
    min_length=0,
    block_ngrams=0,
    penalty_fn=None,
):
    """Beam search: the `n_best` highest-scoring hypotheses of every row.

    A hypothesis Y = y_1 .. y_n scores
        score(Y) = log P(Y) / lp(Y),   log P(Y) = sum_i log_softmax(z_i)[y_i],
        lp(Y) = ((5 + |Y|) / 6) ** alpha              (GNMT, Wu et al. 2016)
    with |Y| = n, the generated tokens including the end token, and alpha =
    `length_penalty` (0 gives plain log-probability).

    Each sentence keeps W = `beam_width` hypotheses. Beam scores start at
    [0, -inf, ..., -inf], since all W beams begin identical. At each step a
    live beam proposes its V continuations, with log P increased by the token's
    log-probability and |Y| by one; a finished beam (one that emitted `end_id`
    or reached its sentence's `max_length`) proposes only itself, extended by
    pad at zero cost. The W proposals of highest score(Y) survive; beams and
    state are reordered by parent with `tf.gather`. The loop ends at the length
    limit or when every beam of every sentence has finished. Hypotheses cut off
    at the limit without an end token are returned too, scored the same way.

    Options for longer outputs (summaries):
    * `min_length`: the end token is not proposed before the hypothesis has
      `min_length - 1` tokens (so |Y| >= min_length when it ends; the length
      limit still cuts).
    * `block_ngrams` n >= 2 (a Python int): a token that would repeat an
      n-gram already in the hypothesis is not proposed (n = 3: trigram
      blocking, Paulus et al. 2018). 0 turns it off.
    * `penalty_fn(state) -> float [N]`: a term added to the score of each
      hypothesis, from the state after its last step, e.g. the GNMT coverage
      penalty beta * sum_j log(min(sum_t a_tj, 1)). It is frozen when a
      hypothesis finishes: score(Y) = log P(Y) / lp(Y) + penalty.

    State: `state` holds B rows; it is tiled to B * W rows with `tile_beams`
    (row b's beams are rows b*W .. b*W + W - 1) and reordered after every step.
    Reordering never moves a hypothesis to another sentence, so a `step_fn`
    that closes over per-sentence tensors (encoder outputs, attention masks)
    must tile them itself with `tile_beams(tensor, beam_width)`.

    Args:
        step_fn: `(tokens [N], state) -> (logits [N, V], new_state)`; see the module docstring.
        state: the initial state for the B rows (any tf.nest structure of tensors).
        start_tokens: int32 [B], the first input token of every row.
        beam_width: W, hypotheses kept per sentence (Python int or scalar tensor).
        max_length: most tokens to generate: Python int, scalar tensor, or int32 [B] per sentence.
        end_id: the token that finishes a hypothesis (kept in it); None or -1 never finishes.
        length_penalty: alpha of lp(Y), Python number or scalar tensor.
        n_best: hypotheses returned per sentence, at most `beam_width`.
        min_length: the fewest tokens (end token included) of a finished hypothesis; scalar or int32 [B].
        block_ngrams: n of the n-grams that may not repeat within a hypothesis (0: no blocking).
        penalty_fn: None, or `state -> float [N]`, added to the scores (see above).

    Returns:
        tokens: int32 [B, n_best, T], right-padded with 0; T = max_length, or its maximum over rows.
        scores: float32 [B, n_best], score(Y) in descending order per sentence.
        lengths: int32 [B, n_best], |Y|.

    If a sentence has fewer than `n_best` possible hypotheses, the extra ones
    score -inf.
    """
    if isinstance(beam_width, int) and beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}.")
    if isinstance(n_best, int) and n_best < 1:
        raise ValueError(f"n_best must be at least 1, got {n_best}.")
    if isinstance(beam_width, int) and isinstance(n_best, int) and n_best > beam_width:
        raise ValueError(f"n_best ({n_best}) cannot exceed beam_width ({beam_width}).")
    if block_ngrams and (not isinstance(block_ngrams, int) or block_ngrams < 2):
        raise ValueError(f"block_ngrams must be 0 or an integer of at least 2, got {block_ngrams!r}.")

    start_tokens = tf.cast(start_tokens, tf.int32)
    state = tf.nest.map_structure(tf.convert_to_tensor, state)
    batch = tf.shape(start_tokens)[0]
    width = beam_width
    limits = tf.broadcast_to(tf.cast(max_length, tf.int32), [batch])  # [B]
    if isinstance(max_length, int):
        total = max_length
    else:
        total = tf.maximum(tf.reduce_max(limits), 0)  # 0 for an empty batch
    end_id = -1 if end_id is None else end_id
    alpha = tf.cast(length_penalty, tf.float32)
    shortest = tf.broadcast_to(tf.cast(min_length, tf.int32), [batch])  # [B]

    def penalty(lengths):
        return tf.pow((5.0 + tf.cast(lengths, tf.float32)) / 6.0, alpha)

    def stopped(t, log_probs, finished):
        """[B, W]: beams that only extend with pad: ended, at their sentence's limit, or impossible (-inf)."""
        at_limit = (t >= limits)[:, None]
        return finished | at_limit | tf.equal(log_probs, _NEG_INF)

    def keep_going(t, tokens, state, history, log_probs, lengths, finished, bonus):
        return (t < total) & tf.logical_not(tf.reduce_all(stopped(t, log_probs, finished)))

    def step(t, tokens, state, history, log_probs, lengths, finished, bonus):
        logits, state = _call_step(step_fn, tokens, state)
        vocab = tf.shape(logits)[-1]
        token_log_probs = tf.nn.log_softmax(logits)
        if block_ngrams:
            token_log_probs = tf.where(_repeated_ngrams(history, t, vocab, block_ngrams), _NEG_INF, token_log_probs)
        token_log_probs = tf.reshape(token_log_probs, tf.stack([batch, width, vocab]))
        too_short = (lengths + 1 < shortest[:, None])[..., None] & tf.equal(tf.range(vocab), end_id)
        token_log_probs = tf.where(too_short, _NEG_INF, token_log_probs)
        done = stopped(t, log_probs, finished)
        if penalty_fn is not None:  # from the state after this step; kept as it was for a finished beam
            step_bonus = tf.reshape(tf.cast(penalty_fn(state), tf.float32), tf.stack([batch, width]))
            bonus = tf.where(done, bonus, step_bonus)

        # Proposals [B, W, V]: log P and |Y| of every continuation of every beam.
        pad_only = tf.where(tf.equal(tf.range(vocab), PAD_ID), 0.0, _NEG_INF)
        proposal_log_probs = log_probs[..., None] + tf.where(done[..., None], pad_only, token_log_probs)
        proposal_lengths = lengths + tf.cast(tf.logical_not(done), tf.int32)
        proposal_scores = proposal_log_probs / penalty(proposal_lengths)[..., None] + bonus[..., None]

        _, chosen = tf.math.top_k(tf.reshape(proposal_scores, tf.stack([batch, -1])), k=width)  # [B, W]
        parent = chosen // vocab
        token = chosen % vocab
        log_probs = tf.gather(tf.reshape(proposal_log_probs, tf.stack([batch, -1])), chosen, batch_dims=1)
        lengths = tf.gather(proposal_lengths, parent, batch_dims=1)
        bonus = tf.gather(bonus, parent, batch_dims=1)
        parent_done = tf.gather(done, parent, batch_dims=1)
        finished = tf.gather(finished, parent, batch_dims=1) | (tf.logical_not(parent_done) & tf.equal(token, end_id))
        token = tf.where(tf.equal(log_probs, _NEG_INF), PAD_ID, token)  # filler beams carry no tokens

        rows = tf.reshape(parent + tf.range(batch)[:, None] * width, [-1])  # parent rows in [B * W]
        state = tf.nest.map_structure(lambda s: tf.gather(s, rows), state)
        tokens = tf.reshape(token, [-1])
        history = tf.gather(history, rows, axis=1)
        history = tf.tensor_scatter_nd_update(history, [[t]], tokens[None])
        return t + 1, tokens, state, history, log_probs, lengths, finished, bonus

    first_beam = tf.where(tf.equal(tf.range(width), 0), 0.0, _NEG_INF)  # [W]
    history = tf.zeros(tf.stack([total, batch * width]), tf.int32)  # [T, B * W]: row t holds step t
    loop_vars = (
        tf.constant(0),
        tile_beams(start_tokens, width),
        tile_beams(state, width),
        history,
        tf.tile(first_beam[None], tf.stack([batch, 1])),
        tf.zeros(tf.stack([batch, width]), tf.int32),
        tf.zeros(tf.stack([batch, width]), tf.bool),
        tf.zeros(tf.stack([batch, width]), tf.float32),
    )
    static_width = width if isinstance(width, int) else None
    invariants = (
        tf.TensorShape([]),
        tf.TensorShape([None]),
        tf.nest.map_structure(_any_rows, loop_vars[2]),
        tf.TensorShape([history.shape[0], None]),
        tf.TensorShape([None, static_width]),
        tf.TensorShape([None, static_width]),
        tf.TensorShape([None, static_width]),
        tf.TensorShape([None, static_width]),
    )
    _, _, _, history, log_probs, lengths, _, bonus = tf.while_loop(
        keep_going, step, loop_vars, shape_invariants=invariants
    )

    scores, best = tf.math.top_k(log_probs / penalty(lengths) + bonus, k=n_best)  # [B, n_best], descending
    sequences = tf.transpose(tf.reshape(history, tf.stack([total, batch, width])), [1, 2, 0])  # [B, W, T]
    return tf.gather(sequences, best, batch_dims=1), scores, tf.gather(lengths, best, batch_dims=1)


def _repeated_ngrams(history, t, vocab, n):
    """bool [N, V]: the tokens that, after the t tokens of each row of
    `history` ([T, N], step k in row k), would complete an n-gram that the
    row already holds."""
    rows = tf.transpose(history)  # [N, T]
    steps = tf.shape(rows)[1]
    padded = tf.concat([rows, tf.zeros(tf.stack([tf.shape(rows)[0], n]), rows.dtype)], axis=1)
    # window k (tokens k .. k + n - 1) is complete and earlier iff k + n - 1 < t; the new
    # n-gram is tokens t - n + 1 .. t - 1 and the candidate
    match = tf.range(steps)[None, :] <= t - n
    for i in range(n - 1):
        prefix_token = tf.gather(padded, tf.maximum(t - n + 1 + i, 0), axis=1)[:, None]
        match &= tf.equal(padded[:, i : i + steps], prefix_token)
    following = padded[:, n - 1 : n - 1 + steps]
    found = tf.where(match)  # [M, 2]: (row, window)
    tokens = tf.gather_nd(following, found)
    indices = tf.stack([tf.cast(found[:, 0], tf.int32), tokens], axis=1)
    hits = tf.scatter_nd(indices, tf.ones(tf.shape(tokens), tf.int32), tf.stack([tf.shape(rows)[0], vocab]))
    return hits > 0
