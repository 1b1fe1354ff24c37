import pytest
import torch

import rnnkit
from rnnkit.models.seq2seq import Attention, Seq2Seq, sequence_loss


def make(cell="gru", attention="none", bidirectional=False, input_feeding=False, layers=1, dtype=torch.float64):
    model = Seq2Seq(11, 13, cell, embed_size=5, hidden_size=6, num_layers=layers, bidirectional=bidirectional,
                    attention=attention, input_feeding=input_feeding, dropout=0.0)
    return model.to(dtype).eval()


def batch(B=3, S=7, T=5, lengths=(7, 3, 1)):
    src = torch.randint(4, 11, (S, B))
    src_len = torch.tensor(lengths[:B])
    for b, n in enumerate(src_len.tolist()):
        src[n:, b] = 0
    tgt = torch.randint(4, 13, (T, B))
    tgt[0] = 2
    return src, src_len, tgt


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
@pytest.mark.parametrize("attention,feed,bidirectional", [
    ("none", False, False), ("none", False, True), ("dot", False, False), ("dot", True, False),
    ("general", True, True), ("general", False, False), ("additive", True, True), ("additive", False, False),
])
def test_shapes_and_attention_masks(cell, attention, feed, bidirectional):
    model = make(cell, attention, bidirectional, feed, layers=2)
    src, src_len, tgt = batch()
    logits = model(src, src_len, tgt)
    assert logits.shape == (5, 3, 13)  # (T, B, V)
    if attention == "none":
        assert model.attention_weights is None
        return
    w = model.attention_weights  # (T, B, S)
    assert w.shape == (5, 3, 7)
    torch.testing.assert_close(w.sum(-1), torch.ones(5, 3, dtype=w.dtype))
    mask = torch.arange(7)[None, :] < src_len[:, None]  # (B, S)
    assert (w.masked_select(~mask.expand(5, -1, -1)) == 0).all()  # no weight on padding


@pytest.mark.parametrize("attention", ["none", "general"])
def test_padding_does_not_change_a_sentence(attention):
    """A sentence translated alone and inside a padded batch gives the same scores."""
    model = make("lstm", attention, bidirectional=True, input_feeding=attention != "none")
    src, src_len, tgt = batch()
    full = model(src, src_len, tgt)
    alone = model(src[:3, 1:2], src_len[1:2], tgt[:, 1:2])
    torch.testing.assert_close(full[:, 1:2], alone, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2])
def test_no_attention_matches_a_hand_unrolled_encoder_decoder(cell, layers):
    """The lecture's model: the encoder's final states start the decoder; nothing else
    passes from source to output.  Unrolled here with rnnkit cells, one sentence at a time."""
    model = make(cell, "none", layers=layers)
    src, src_len, tgt = batch()
    logits = model(src, src_len, tgt)
    Cell = rnnkit.LSTMCell if cell == "lstm" else rnnkit.GRUCell
    enc = [Cell(5 if k == 0 else 6, 6).double() for k in range(layers)]
    for k, c in enumerate(enc):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(c, name).data.copy_(getattr(model.encoder, f"{name}_l{k}"))
    for b in range(src.shape[1]):
        states = [None] * layers
        for s in range(int(src_len[b])):  # encoder: only the valid steps
            x = model.src_embed(src[s, b:b + 1])
            for k in range(layers):
                states[k] = enc[k](x, states[k])
                x = states[k][0] if cell == "lstm" else states[k]
        for t in range(tgt.shape[0]):  # decoder: starts from the encoder's final states
            x = model.tgt_embed(tgt[t, b:b + 1])
            for k in range(layers):
                states[k] = model.decoder[k](x, states[k])
                x = states[k][0] if cell == "lstm" else states[k]
            torch.testing.assert_close(logits[t, b:b + 1], model.out(x), rtol=1e-10, atol=1e-12)


def test_teacher_forcing_zero_feeds_the_models_own_argmax():
    model = make("gru", "general", True, True)
    src, src_len, tgt = batch()
    free = model(src, src_len, tgt, teacher_forcing=0.0)
    state = model.encode(src, src_len)
    tokens = tgt[0]
    for t in range(tgt.shape[0]):
        step, state, _ = model.decode_step(tokens, state)
        torch.testing.assert_close(free[t], step)
        tokens = step.argmax(-1)


def test_gradients_reach_every_parameter():
    model = make("lstm", "additive", True, True, layers=2).train()
    src, src_len, tgt = batch()
    sequence_loss(model(src, src_len, tgt), tgt, pad=0, label_smoothing=0.1).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_sequence_loss_ignores_padding():
    logits = torch.randn(4, 2, 6, dtype=torch.float64)
    targets = torch.tensor([[1, 2], [3, 0], [4, 0], [0, 0]])
    keep = targets != 0
    manual = -torch.log_softmax(logits, -1).gather(2, targets[..., None]).squeeze(-1)[keep].mean()
    torch.testing.assert_close(sequence_loss(logits, targets, pad=0), manual)


def test_attention_scores_by_hand():
    torch.manual_seed(1)
    q, mem = torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 3, 4, dtype=torch.float64)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    att = Attention("dot", 4, 4).double()
    ctx, w = att(q, mem, att.keys(mem), mask)
    scores = (mem @ q[:, :, None]).squeeze(-1).masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(w, torch.softmax(scores, -1))
    torch.testing.assert_close(ctx, (w[:, :, None] * mem).sum(1))
    general = Attention("general", 4, 5).double()
    mem5 = torch.randn(2, 3, 5, dtype=torch.float64)
    _, w = general(q, mem5, general.keys(mem5), mask)
    scores = torch.einsum("bh,bsh->bs", q, mem5 @ general.w_a.weight.T).masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(w, torch.softmax(scores, -1))


def test_bad_arguments_say_what_was_expected():
    with pytest.raises(ValueError, match="attention must be one of"):
        Seq2Seq(5, 5, attention="luong")
    with pytest.raises(ValueError, match="input_feeding needs attention"):
        Seq2Seq(5, 5, attention="none", input_feeding=True)
    with pytest.raises(ValueError, match="dot attention needs equal.*Expected 12, got 6"):
        Seq2Seq(5, 5, hidden_size=6, bidirectional=True, attention="dot")
    model = make()
    with pytest.raises(ValueError, match=r"src_lengths must be \(3,\), got \(2,\)"):
        model.encode(torch.ones(4, 3, dtype=torch.long), torch.tensor([4, 4]))
