"""The three GRU implementations behind `nlptool.layers.GRU`.

Every function here works on time-major tensors and returns the *state
sequence* `hs` of shape (time, batch, units): the state after each step, with
the state carried unchanged over masked steps. The layer turns that sequence
into Keras-style outputs, so the three paths share one definition of what a
masked output is.

Notation (Keras gate order z, r, h, `reset_after=True`):

    z  = sigmoid(x W_z + b_z + h U_z + c_z)
    r  = sigmoid(x W_r + b_r + h U_r + c_r)
    h~ = tanh(x W_h + b_h + r * (h U_h + c_h))
    h' = z * h + (1 - z) * h~

`xp` below is the input projection `x W + b` for all steps at once, computed
by the caller with one GEMM; `rk` is the recurrent kernel U (units, 3*units)
and `rb` the recurrent bias c (3*units,) or None.
"""

import tensorflow as tf

from nlptool import compat

# tf.raw_ops.CudnnRNNV3 (see nlptool.compat). Looked up at call time, so tests
# can stand in a CPU emulation of the op.
CUDNN_OP = compat.cudnn_rnn_v3


# --------------------------------------------------------------------------
# Reference path: one readable step, automatic differentiation.
# --------------------------------------------------------------------------


def reference_step(xp_t, h, rk, rb, reset_after, activation, recurrent_activation, rec_mask=None):
    """One GRU step from the input side of the gates `xp_t` (batch, 3 units),
    x_t @ kernel + input bias, and the state `h`. Returns (h_new, z, r, candidate)."""
    z_x, r_x, h_x = tf.split(xp_t, 3, axis=-1)
    u_z, u_r, u_h = tf.split(rk, 3, axis=-1)
    c_z, c_r, c_h = (0.0, 0.0, 0.0) if rb is None else tf.split(rb, 3)
    h_in = h if rec_mask is None else h * rec_mask
    z = recurrent_activation(z_x + tf.matmul(h_in, u_z) + c_z)
    r = recurrent_activation(r_x + tf.matmul(h_in, u_r) + c_r)
    if reset_after:
        candidate = activation(h_x + r * (tf.matmul(h_in, u_h) + c_h))
    else:
        candidate = activation(h_x + tf.matmul(r * h_in, u_h))
    return z * h + (1.0 - z) * candidate, z, r, candidate


def reference_sequence(x, kernel, in_bias, h0, rk, rb, mask, rec_mask, reset_after, activation, recurrent_activation):
    """Run the GRU step by step on time-major `x`. Returns (hs, gates) with
    gates a dict of (time, batch, units) tensors z, r, candidate (zero at
    masked steps).

    `activation` and `recurrent_activation` are callables; the reference
    path is the only one that accepts activations other than tanh/sigmoid.
    """
    xp = tf.einsum("tbd,dk->tbk", x, kernel)  # the input side of every gate, all steps
    if in_bias is not None:
        xp = xp + in_bias
    steps = tf.shape(xp)[0]

    def step(xp_t, h):
        return reference_step(xp_t, h, rk, rb, reset_after, activation, recurrent_activation, rec_mask)

    def body(t, h, hs_ta, z_ta, r_ta, c_ta):
        h_new, z, r, c = step(xp[t], h)
        if mask is not None:
            m = mask[t]
            h_new = tf.where(m, h_new, h)
            z, r, c = (tf.where(m, g, tf.zeros_like(g)) for g in (z, r, c))
        return (t + 1, h_new, hs_ta.write(t, h_new), z_ta.write(t, z), r_ta.write(t, r), c_ta.write(t, c))

    arrays = [tf.TensorArray(h0.dtype, size=steps) for _ in range(4)]
    _, _, hs_ta, z_ta, r_ta, c_ta = tf.while_loop(lambda t, *_: t < steps, body, (tf.constant(0), h0, *arrays))
    gates = {"z": z_ta.stack(), "r": r_ta.stack(), "candidate": c_ta.stack()}
    return hs_ta.stack(), gates


# --------------------------------------------------------------------------
# Fused path: the recurrence in a tight loop, a hand-written backward pass.
# --------------------------------------------------------------------------
# Forward keeps only the state sequence. Backward recomputes every gate for
# all steps at once from that sequence (one large GEMM and element-wise work
# over (time, batch, 3*units)), so that its sequential loop carries only one
# small GEMM and a few element-wise products per step. The weight gradients
# are then single GEMMs over all steps.


def _forward_loop(xp, h0, rk, rb, mask, rec_mask, reset_after, keep_products, x=None, kernel=None, in_bias=None):
    """Returns (hs, products, xp).

    `products` (time, batch, 3*units) holds each step's recurrent products,
    which the backward pass needs, when `keep_products` (training), else it
    is None and backward recomputes them. The input projection is either
    given for all steps (`xp`), or, when `xp` is None, computed step by step
    from `x`, `kernel` and `in_bias` inside the loop, where it does not wait
    for the recurrence and can run beside it; it is then returned when
    `keep_products`.
    """
    project_in_loop = xp is None
    steps = tf.shape(x if project_in_loop else xp)[0]
    units = tf.shape(h0)[-1]
    if reset_after:

        def step(x_t, h, h_in):
            hu = tf.matmul(h_in, rk)  # (batch, 3*units)
            if rb is not None:
                hu = hu + rb
            zr = tf.sigmoid(x_t[:, : 2 * units] + hu[:, : 2 * units])
            z, r = zr[:, :units], zr[:, units:]
            c = tf.tanh(x_t[:, 2 * units :] + r * hu[:, 2 * units :])
            return c + z * (h - c), hu

    else:
        rk_zr, rk_h = rk[:, : 2 * units], rk[:, 2 * units :]

        def step(x_t, h, h_in):
            h_zr = tf.matmul(h_in, rk_zr)
            zr = tf.sigmoid(x_t[:, : 2 * units] + h_zr)
            z, r = zr[:, :units], zr[:, units:]
            rh = tf.matmul(r * h_in, rk_h)
            c = tf.tanh(x_t[:, 2 * units :] + rh)
            return c + z * (h - c), (tf.concat([h_zr, rh], axis=-1) if keep_products else None)

    def body(t, h, hs_ta, p_ta, xp_ta):
        if project_in_loop:
            x_t = tf.matmul(x[t], kernel)
            if in_bias is not None:
                x_t = x_t + in_bias
        else:
            x_t = xp[t]
        h_new, products = step(x_t, h, h if rec_mask is None else h * rec_mask)
        if mask is not None:
            h_new = tf.where(mask[t], h_new, h)  # masked step: keep the state
        if keep_products:
            p_ta = p_ta.write(t, products)
            if project_in_loop:
                xp_ta = xp_ta.write(t, x_t)
        return t + 1, h_new, hs_ta.write(t, h_new), p_ta, xp_ta

    keep_xp = keep_products and project_in_loop
    arrays = [
        tf.TensorArray(h0.dtype, size=steps),
        tf.TensorArray(h0.dtype, size=steps if keep_products else 0),
        tf.TensorArray(h0.dtype, size=steps if keep_xp else 0),
    ]
    _, _, hs_ta, p_ta, xp_ta = tf.while_loop(
        lambda t, *_: t < steps, body, (tf.constant(0), h0, *arrays), maximum_iterations=steps
    )
    if keep_xp:
        xp = xp_ta.stack()
    return hs_ta.stack(), (p_ta.stack() if keep_products else None), xp


def _backward_loop(xp, h0, rk, rb, mask, rec_mask, reset_after, hs, products, dhs):
    """Gradients of sum(dhs * hs) with respect to xp, h0, rk and rb."""
    steps, batch = tf.shape(xp)[0], tf.shape(xp)[1]
    units = tf.shape(h0)[-1]
    h_prev = tf.concat([h0[None], hs[:-1]], axis=0)  # (time, batch, units)
    h_in = h_prev if rec_mask is None else h_prev * rec_mask
    flat_in = tf.reshape(h_in, [-1, units])
    x_z, x_r, x_h = xp[..., :units], xp[..., units : 2 * units], xp[..., 2 * units :]
    zero = tf.zeros_like(h0)

    if reset_after:
        if products is None:  # one GEMM over all steps
            products = tf.matmul(flat_in, rk)
            if rb is not None:
                products = products + rb
            products = tf.reshape(products, [steps, batch, 3 * units])
        u_h = products[..., 2 * units :]
        z = tf.sigmoid(x_z + products[..., :units])
        r = tf.sigmoid(x_r + products[..., units : 2 * units])
        c = tf.tanh(x_h + r * u_h)
        a_z = (h_prev - c) * z * (1.0 - z)  # d h'/d pre-activation of z
        a_h = (1.0 - z) * (1.0 - c * c)  # d h'/d pre-activation of h~
        a_r = a_h * u_h * r * (1.0 - r)
        # d h'/d (h U + c), per gate: the recurrent-side pre-activations
        k_rec = tf.concat([a_z, a_r, a_h * r], axis=-1)

        def body(i, dh, g_ta):
            t = steps - 1 - i  # walk time backwards
            dh = dh + dhs[t]
            g = dh if mask is None else tf.where(mask[t], dh, zero)
            d_rec = tf.tile(g, [1, 3]) * k_rec[t]
            d_prev = tf.matmul(d_rec, rk, transpose_b=True)
            if rec_mask is not None:
                d_prev = d_prev * rec_mask
            d_prev = d_prev + g * z[t]
            if mask is not None:
                d_prev = d_prev + tf.where(mask[t], zero, dh)
            return i + 1, d_prev, g_ta.write(t, g)

        g_ta = tf.TensorArray(h0.dtype, size=steps)
        _, dh0, g_ta = tf.while_loop(
            lambda t, *_: t < steps, body, (tf.constant(0), zero, g_ta), maximum_iterations=steps
        )
        g = g_ta.stack()  # (time, batch, units): d loss / d h'_t where the step is live
        d_rec = tf.tile(g, [1, 1, 3]) * k_rec
        dxp = tf.concat([g * a_z, g * a_r, g * a_h], axis=-1)
        drk = tf.matmul(flat_in, tf.reshape(d_rec, [-1, 3 * units]), transpose_a=True)
        drb = None if rb is None else tf.reduce_sum(d_rec, axis=[0, 1])
        return dxp, dh0, drk, drb

    rk_zr, rk_h = rk[:, : 2 * units], rk[:, 2 * units :]
    if products is None:
        h_zr = tf.reshape(tf.matmul(flat_in, rk_zr), [steps, batch, 2 * units])
    else:
        h_zr = products[..., : 2 * units]
    z = tf.sigmoid(x_z + h_zr[..., :units])
    r = tf.sigmoid(x_r + h_zr[..., units:])
    rh = r * h_in
    if products is None:
        u_h = tf.reshape(tf.matmul(tf.reshape(rh, [-1, units]), rk_h), [steps, batch, units])
    else:
        u_h = products[..., 2 * units :]
    c = tf.tanh(x_h + u_h)
    a_z = (h_prev - c) * z * (1.0 - z)
    a_h = (1.0 - z) * (1.0 - c * c)
    k_r = h_in * r * (1.0 - r)

    def body(i, dh, g_ta, drh_ta):
        t = steps - 1 - i  # walk time backwards
        dh = dh + dhs[t]
        g = dh if mask is None else tf.where(mask[t], dh, zero)
        d_h = g * a_h[t]
        d_rh = tf.matmul(d_h, rk_h, transpose_b=True)  # d loss / d (r * h)
        d_zr = tf.concat([g * a_z[t], d_rh * k_r[t]], axis=-1)
        d_prev = tf.matmul(d_zr, rk_zr, transpose_b=True) + d_rh * r[t]
        if rec_mask is not None:
            d_prev = d_prev * rec_mask
        d_prev = d_prev + g * z[t]
        if mask is not None:
            d_prev = d_prev + tf.where(mask[t], zero, dh)
        return i + 1, d_prev, g_ta.write(t, g), drh_ta.write(t, d_rh)

    g_ta = tf.TensorArray(h0.dtype, size=steps)
    drh_ta = tf.TensorArray(h0.dtype, size=steps)
    _, dh0, g_ta, drh_ta = tf.while_loop(
        lambda t, *_: t < steps, body, (tf.constant(0), zero, g_ta, drh_ta), maximum_iterations=steps
    )
    g, d_rh = g_ta.stack(), drh_ta.stack()
    d_z, d_r, d_h = g * a_z, d_rh * k_r, g * a_h
    dxp = tf.concat([d_z, d_r, d_h], axis=-1)
    d_zr = tf.reshape(tf.concat([d_z, d_r], axis=-1), [-1, 2 * units])
    drk = tf.concat(
        [
            tf.matmul(flat_in, d_zr, transpose_a=True),
            tf.matmul(tf.reshape(rh, [-1, units]), tf.reshape(d_h, [-1, units]), transpose_a=True),
        ],
        axis=1,
    )
    return dxp, dh0, drk, None


_forward_xla = tf.function(_forward_loop, jit_compile=True, reduce_retracing=True)
_backward_xla = tf.function(_backward_loop, jit_compile=True, reduce_retracing=True)
# As graphs, so that an eager call does not run the loop step by step in Python;
# inside an outer tf.function they are inlined.
_forward_graph = tf.function(_forward_loop, reduce_retracing=True)
_backward_graph = tf.function(_backward_loop, reduce_retracing=True)

# How the forward pass runs, by batch size (measured on a 2-core CPU, see
# benchmarks/gru.py): XLA removes the per-op dispatch cost that dominates
# small batches (batch 1: 0.9 ms with the projection inside the XLA loop,
# 1.4 ms with it as a separate GEMM before), but its CPU element-wise
# kernels are slower than TensorFlow's on large ones. Without XLA, projecting each step's input
# inside the loop lets that GEMM run beside the recurrence while the
# recurrent GEMM is small; once the recurrent GEMM fills both cores, one
# GEMM over all steps first is faster. The backward loop, whose per-step
# work is lighter, was faster under XLA at every measured shape.
XLA_FORWARD_MAX_BATCH = 16
IN_LOOP_PROJECTION_MAX_MACS = 2**24  # batch * units * 3 * units per step


def _forward(x, kernel, in_bias, h0, rk, rb, mask, rec_mask, reset_after, keep_products, jit_compile):
    """(hs, products, xp): the forward pass in the fastest form for the batch size."""
    common = (h0, rk, rb, mask, rec_mask, reset_after, keep_products)
    units = rk.shape[0]

    def all_steps_projected(forward):
        def run():
            steps, batch = tf.shape(x)[0], tf.shape(x)[1]
            xp = tf.matmul(tf.reshape(x, [-1, tf.shape(x)[-1]]), kernel)  # one GEMM for all steps
            if in_bias is not None:
                xp = xp + in_bias
            xp = tf.reshape(xp, [steps, batch, 3 * units])
            hs, products, _ = forward(xp, *common)
            return hs, products, xp

        return run

    def in_loop(forward):
        return lambda: forward(None, *common, x=x, kernel=kernel, in_bias=in_bias)

    batch = x.shape[1] if x.shape[1] is not None else tf.shape(x)[1]
    choices = [(batch * units * 3 * units <= IN_LOOP_PROJECTION_MAX_MACS, in_loop(_forward_graph))]
    if jit_compile:
        # one XLA computation for projection and recurrence: no TF op in between
        choices.insert(0, (batch <= XLA_FORWARD_MAX_BATCH, in_loop(_forward_xla)))
    chosen = all_steps_projected(_forward_graph)
    for condition, branch in reversed(choices):
        if isinstance(condition, bool):  # static batch size: decide now
            chosen = branch if condition else chosen
        else:
            chosen = _cond(condition, branch, chosen, keep_products)
    hs, products, xp = chosen()
    return hs, products, (xp if keep_products else None)


def _cond(condition, true_fn, false_fn, keep_products):
    """tf.cond over forward variants; without `keep_products` only `hs` is
    returned by the branches (tf.cond cannot return None)."""
    if keep_products:
        return lambda: tf.cond(condition, true_fn, false_fn)

    def run():
        hs = tf.cond(condition, lambda: true_fn()[0], lambda: false_fn()[0])
        return hs, None, None

    return run


def fused_sequence(x, kernel, in_bias, h0, rk, rb, mask, rec_mask, reset_after, jit_compile, keep_products):
    """State sequence (time, batch, units) with a hand-written gradient.

    `x` is the time-major input (time, batch, features), `kernel` and
    `in_bias` its projection. `mask` is bool (time, batch, 1) or None,
    `rec_mask` the recurrent dropout mask (batch, units) or None; neither
    receives a gradient. With `jit_compile`, the backward loop, and the
    forward loop for batches of at most XLA_FORWARD_MAX_BATCH, are compiled
    by XLA. With `keep_products` (training) the forward pass stores each
    step's input projection and recurrent products, so that the backward
    pass needs no GEMM to recompute them.
    """
    backward = _backward_xla if jit_compile else _backward_graph
    has_in_bias, has_rb = in_bias is not None, rb is not None
    # placeholders keep the signature fixed; their gradients are zeros
    in_bias = in_bias if has_in_bias else tf.zeros([0], x.dtype)
    rb = rb if has_rb else tf.zeros([0], x.dtype)
    if rec_mask is not None:
        rec_mask = tf.stop_gradient(rec_mask)  # it may derive from a watched tensor

    @tf.custom_gradient
    def run(x, kernel, in_bias, h0, rk, rb):
        # Nothing inside may be recorded by an outer tape: the gradient is ours.
        x, kernel, in_bias, h0, rk, rb = (tf.stop_gradient(t) for t in (x, kernel, in_bias, h0, rk, rb))
        in_bias_used = in_bias if has_in_bias else None
        rb_used = rb if has_rb else None
        hs, products, xp = _forward(
            x, kernel, in_bias_used, h0, rk, rb_used, mask, rec_mask, reset_after, keep_products, jit_compile
        )

        def grad(dhs):
            steps, batch, features = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
            xp_ = xp
            if xp_ is None:
                xp_ = tf.matmul(tf.reshape(x, [-1, features]), kernel)
                if has_in_bias:
                    xp_ = xp_ + in_bias
                xp_ = tf.reshape(xp_, [steps, batch, -1])
            dxp, dh0, drk, drb = backward(
                xp_, h0, rk, rb_used, mask, rec_mask, reset_after, hs, products, tf.stop_gradient(dhs)
            )
            flat_dxp = tf.reshape(dxp, [steps * batch, -1])
            dx = tf.reshape(tf.matmul(flat_dxp, kernel, transpose_b=True), [steps, batch, features])
            dkernel = tf.matmul(tf.reshape(x, [-1, features]), flat_dxp, transpose_a=True)
            din_bias = tf.reduce_sum(flat_dxp, axis=0) if has_in_bias else tf.zeros_like(in_bias)
            return dx, dkernel, din_bias, dh0, drk, (drb if has_rb else tf.zeros_like(rb))

        return hs, grad

    hs = run(x, kernel, in_bias, h0, rk, rb)
    # tf.cond and retraced XLA functions can lose static dimensions
    hs.set_shape(x.shape[:2].concatenate([rk.shape[0]]))
    return hs


# --------------------------------------------------------------------------
# cuDNN path (GPU only).
# --------------------------------------------------------------------------


def cudnn_pack_params(kernel, recurrent_kernel, bias):
    """Flatten Keras GRU weights into the opaque cuDNN parameter buffer.

    cuDNN's canonical GRU layout is six weight matrices, each (units, fan_in)
    row-major: input r, z, h then recurrent r, z, h; followed by six bias
    vectors in the same order. Keras stores gates as z, r, h in
    (fan_in, units) columns, so each block is swapped and transposed. ROCm
    (MIOpen) keeps Keras's z, r order.
    """
    w = tf.split(kernel, 3, axis=1) + tf.split(recurrent_kernel, 3, axis=1)
    b = tf.split(tf.reshape(bias, [-1]), 6)
    if tf.sysconfig.get_build_info().get("is_cuda_build", True):
        order = [1, 0, 2, 4, 3, 5]  # z, r, h -> r, z, h on both sides
        w = [w[i] for i in order]
        b = [b[i] for i in order]
    flat = [tf.reshape(tf.transpose(m), [-1]) for m in w] + [tf.reshape(v, [-1]) for v in b]
    return tf.concat(flat, axis=0)


def cudnn_sequence(x, h0, kernel, recurrent_kernel, bias, lengths, go_backwards):
    """State sequence from CudnnRNNV3 on time-major `x` (time, batch, dim).

    `x` is in its original time order; with `go_backwards` the returned
    sequence is in processing (reversed) order like the other paths. Rows
    must be right padded with `lengths` valid steps, each at least 1.
    """
    params = cudnn_pack_params(kernel, recurrent_kernel, bias)
    if go_backwards:
        # reverse only the valid prefix, so cuDNN still sees right padding
        x = tf.reverse_sequence(x, lengths, seq_axis=0, batch_axis=1)
    outputs, h_last, _, _, _ = CUDNN_OP(
        input=x,
        input_h=h0[None],
        input_c=tf.zeros([], x.dtype),
        params=params,
        sequence_lengths=lengths,
        rnn_mode="gru",
        input_mode="linear_input",
        direction="unidirectional",
        is_training=True,
        time_major=True,
    )
    h_last = h_last[0]
    steps = tf.shape(x)[0]
    valid = tf.transpose(tf.sequence_mask(lengths, steps))[..., None]  # (time, batch, 1)
    if go_backwards:
        outputs = tf.reverse(tf.reverse_sequence(outputs, lengths, seq_axis=0, batch_axis=1), [0])
        # in processing order the padding comes first: the state is still h0
        return tf.where(tf.reverse(valid, [0]), outputs, h0[None]), h_last
    # past the end of a row cuDNN writes zeros; the carried state is h_last
    return tf.where(valid, outputs, h_last[None]), h_last
