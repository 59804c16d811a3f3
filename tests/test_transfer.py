"""The transfer task of lesson 02 and its fine-tuning loop."""

import pytest
import torch

from minillm.data import NAMES, chance_accuracy
from minillm.model import GPT, GPTConfig
from minillm.threads import one_thread
from minillm.tokenizer import ByteTokenizer
from minillm.transfer import (
    ADAM_STATE_BYTES_PER_PARAM,
    answer_batch,
    finetune,
    optimizer_state_bytes,
    prepare,
    transfer_task,
)

pytestmark = pytest.mark.lesson02

TOK = ByteTokenizer()  # exact and instant for token-level checks; the course's BPE tokenizer for training


@pytest.fixture(scope="module")
def bpe():
    from minillm import zoo

    return zoo.load("teacher")[1]


@pytest.fixture
def tiny():
    with torch.random.fork_rng(), one_thread():
        torch.manual_seed(0)
        return GPT(GPTConfig(vocab_size=512, block_size=256, n_layer=1, n_head=2, n_embd=16))


def test_task_is_deterministic_and_reads_like_the_stories():
    a, b = transfer_task(20, "train"), transfer_task(20, "train")
    assert [q.prompt + q.answer for q in a] == [q.prompt + q.answer for q in b]
    names = {f" {n}." for n, _, _ in NAMES}
    for q in a:
        assert q.question.startswith("Q: Who had the ") and q.question.endswith("? A:")
        assert len(q.choices) == 5 and len(set(q.choices)) == 5 and set(q.choices) <= names
        hero = q.answer.strip(" .")
        # the story says the hero had the object: "Tom had a red key." or similar
        obj = q.question.removeprefix("Q: Who had the ").removesuffix("? A:")
        assert hero in q.context and obj.split()[-1] in q.context
    assert chance_accuracy(a) == pytest.approx(0.2)


def test_splits_are_disjoint_and_held_out_from_pretraining():
    from minillm.data import train_contexts

    train, test = transfer_task(100, "train"), transfer_task(100, "test")
    assert not {q.context for q in train} & {q.context for q in test}
    assert not {q.context for q in train + test} & train_contexts()


def test_not_owner_asks_the_same_story_with_the_friend_as_answer():
    own, other = transfer_task(10, "test"), transfer_task(10, "test", kind="not_owner")
    for a, b in zip(own, other):
        assert a.context == b.context and a.choices == b.choices and a.answer != b.answer
        assert b.answer in a.choices and "did not have" in b.question


def test_answer_batch_puts_the_loss_on_the_answer_only():
    qs = transfer_task(3, "train")
    x, y = answer_batch(TOK, qs)
    for i, q in enumerate(qs):
        p, a = TOK.encode(q.prompt), TOK.encode(q.answer)
        assert x[i, : len(p) + len(a) - 1].tolist() == p + a[:-1]
        keep = y[i] >= 0
        assert TOK.decode(y[i][keep].tolist()) == q.answer  # targets spell the answer, nothing else
        assert keep.nonzero().min() == len(p) - 1  # the last prompt position predicts the first answer token
    assert x.shape == y.shape and x.shape[1] == max(len(TOK.encode(q.prompt + q.answer)) for q in qs) - 1


def test_prepare_sets_what_trains_and_leaves_the_model_alone(tiny):  # n_embd 16: c_attn is 16 -> 48
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    total = sum(p.numel() for p in tiny.parameters())
    assert optimizer_state_bytes(prepare(tiny, "full")) == 8 * total
    head = prepare(tiny, "head")
    trainable = {n for n, p in head.named_parameters() if p.requires_grad}
    assert trainable == {"ln_f.weight", "ln_f.bias", "lm_head.weight"}
    assert head.lm_head.weight is not head.wte.weight  # untied: the probe must not move the embeddings
    lora = prepare(tiny, "lora", r=2)
    assert optimizer_state_bytes(lora) == 8 * 2 * (16 + 48)  # c_attn 16 -> 48, one layer
    s1, s2 = prepare(tiny, "scratch"), prepare(tiny, "scratch")
    assert torch.equal(s1.wte.weight, s2.wte.weight) and not torch.equal(s1.wte.weight, tiny.wte.weight)
    for k, v in tiny.state_dict().items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(ValueError, match="method='lora2'"):
        prepare(tiny, "lora2")


def test_optimizer_state_bytes_match_torch_adamw(tiny):
    m = prepare(tiny, "lora", r=2)
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params)
    m(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))[1].backward()
    opt.step()
    torch_bytes = sum(t.numel() * t.element_size() for s in opt.state.values() for k, t in s.items() if k != "step")
    assert optimizer_state_bytes(m) == torch_bytes == ADAM_STATE_BYTES_PER_PARAM * sum(p.numel() for p in params)


def test_finetune_lowers_the_answer_loss_and_is_deterministic(tiny, bpe):
    qs = transfer_task(8, "train")
    a, b = prepare(tiny, "full"), prepare(tiny, "full")
    with one_thread():
        ha = finetune(a, bpe, qs, steps=30, batch_size=4, lr=2e-2, progress=False)
        hb = finetune(b, bpe, qs, steps=30, batch_size=4, lr=2e-2, progress=False)
    assert ha["loss"] == hb["loss"]
    assert sum(ha["loss"][-3:]) / 3 < 0.7 * sum(ha["loss"][:3]) / 3
    assert ha["seconds_per_step"] > 0 and len(ha["loss"]) == len(ha["step_seconds"]) == 30
    st = sorted(ha["step_seconds"])
    assert ha["seconds_per_step"] == pytest.approx((st[14] + st[15]) / 2)  # the median of 30 steps
    assert sum(ha["step_seconds"]) <= ha["seconds"]


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m: transfer_task(0), "n=0"),
        (lambda m: transfer_task(5, "val"), "split='val'"),
        (lambda m: transfer_task(5, kind="color"), "kind='color'"),
        (lambda m: answer_batch(TOK, []), "questions is empty"),
        (lambda m: finetune(m, TOK, transfer_task(2), steps=0, progress=False), "steps=0"),
        (lambda m: finetune(m.requires_grad_(False), TOK, transfer_task(2), progress=False), "no trainable"),
    ],
)
def test_bad_input_is_a_clear_error(tiny, call, match):
    with pytest.raises(ValueError, match=match):
        call(tiny)
